"""The run's result as a model (model/result.py): read back whole, tolerant of what a newer
chaoskit adds, and refused with a message that names the field when it is not a result."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chaoskit.model.result import RESULT_SCHEMA, ResultError, RunResult

WRITTEN: dict[str, Any] = {
    "schema": RESULT_SCHEMA,
    "run": "20261204-120000-x-ab12",
    "experiment": {"name": "x"},
    "outcome": "deviated",
    "exit_code": 1,
    "phases": [{"phase": "fault", "start": 1.0, "end": 4.0, "wall": 1e9, "trial": 1}],
    "faults": [{"event": "inject", "id": "f1", "fault": "latency", "target": "web", "at": 1.5,
                "wall": 1e9, "applied_after": 0.01}],
    "verdict": {
        "comparison": "concurrent", "verdict": "deviated", "reason": "deviated: p50",
        "metrics": [{"metric": "p50", "verdict": "deviated", "reason": "slower",
                     "effect": {"estimate": 1.4, "low": 1.2, "high": 1.6, "scale": "ratio"},
                     "p_deviation": 0.001}],
        "recovery": {"p50": {"median": 2.0, "trials": [{"trial": 1, "seconds": 2.0}],
                             "recovered_within": 2.0}},
        "recovery_failures": [{"metric": "p50", "trial": 1, "reason": "late"}],
    },
    "added_by_a_newer_chaoskit": {"kept": True},
}  # fmt: skip


def test_a_result_reads_into_typed_parts_and_writes_back_what_it_read() -> None:
    result = RunResult.from_json(copy.deepcopy(WRITTEN))
    assert result.verdict is not None and result.verdict.metrics[0].verdict == "deviated"
    assert result.verdict.recovery["p50"].median == 2.0
    assert result.phases[0].trial == 1 and result.faults[0].target == "web"
    again = result.to_json()
    for key, value in WRITTEN.items():  # every field as written, unknown ones too
        assert again[key] == value, key
    assert RunResult.from_json(again).to_json() == again


@pytest.mark.parametrize(
    ("change", "words"),
    [({"schema": "something/1"}, "is not a chaoskit result"),
     ({"exit_code": "one"}, "is not a result chaoskit can read (exit_code: "),
     ({"phases": [{"phase": "fault"}]}, "(phases.0.start: Field required)")],
)  # fmt: skip
def test_what_is_not_a_result_is_refused_naming_the_field(
    change: dict[str, Any], words: str
) -> None:
    with pytest.raises(ResultError, match=words.replace("(", r"\(").replace(")", r"\)")):
        RunResult.from_json({**WRITTEN, **change}, "given.json")
