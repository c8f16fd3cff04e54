"""The run history and the CI gate, through the real CLI on result files: the gate passes an
equal run, fails a worse one (verdict or time to recovery) and says why; history lists runs
and the time-to-recovery trend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaoskit.gameday.gate import compare_runs
from chaoskit.gameday.history import last_good, record_run, runs
from chaoskit.model.result import RunResult

CHAOSKIT = [sys.executable, "-m", "chaoskit"]


def result(
    run: str,
    wall: float,
    outcome: str = "held",
    verdicts: dict[str, str] | None = None,
    recovery: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """The parts of a result.json the history keeps."""
    verdicts = verdicts if verdicts is not None else {"p50": "held", "errors": "held"}
    recovery = recovery if recovery is not None else {"p50": 2.0}
    return {
        "schema": "chaoskit.result/1",
        "run": run,
        "experiment": {"name": "backend-down"},
        "outcome": outcome,
        "exit_code": {"held": 0, "deviated": 1, "inconclusive": 4}.get(outcome, 3),
        "phases": [{"phase": "warmup", "start": 1.0, "end": 2.0, "wall": wall}],
        "verdict": {
            "metrics": [{"metric": m, "verdict": v} for m, v in verdicts.items()],
            "recovery": {
                m: {"median": t, "durations": [t or 9.0], "censored": [t is None]}
                for m, t in recovery.items()
            },
        },
    }


def write(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / data["run"] / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


def gate(path: Path, reports: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHAOSKIT, "gate", str(path), "--reports", str(reports), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_gate_passes_an_equal_run_and_fails_a_worse_one(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    good = write(reports, result("r1", 1000.0))
    first = gate(good, reports)
    assert first.returncode == 0 and "no earlier good run: this one held" in first.stdout
    equal = write(reports, result("r2", 2000.0, recovery={"p50": 2.5}))
    passed = gate(equal, reports)
    assert passed.returncode == 0, passed.stdout
    assert "gate passed: r2 against run r1" in passed.stdout
    worse = write(reports, result("r3", 3000.0, "deviated", {"p50": "deviated", "errors": "held"}))
    failed = gate(worse, reports)
    assert failed.returncode == 1
    assert "the verdict got worse: DEVIATED, where run r2 was HELD" in failed.stdout
    assert "p50 got worse: DEVIATED, was HELD" in failed.stdout
    slow = write(reports, result("r4", 4000.0, recovery={"p50": 6.0}))
    too_slow = gate(slow, reports)
    assert too_slow.returncode == 1
    assert "p50 took 6.0 s to recover, beyond 1.5x the 2.5 s of run r2" in too_slow.stdout
    assert gate(slow, reports, "--ratio", "3").returncode == 0


def test_history_lists_runs_and_the_recovery_trend(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for i, ttr in enumerate([2.0, 3.0, None], start=1):
        path = write(reports, result(f"r{i}", 1000.0 * i, recovery={"p50": ttr}))
        record_run(reports / "history.db", RunResult.read(path), path)
    shown = subprocess.run([*CHAOSKIT, "history", "--reports", str(reports)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split()[2] for line in lines[:3]] == ["r1", "r2", "r3"]
    assert "backend-down: time to recovery of p50: 2.0s → 3.0s → not recovered" in shown.stdout
    empty = subprocess.run([*CHAOSKIT, "history", "--reports", str(tmp_path / "none")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert empty.returncode == 0 and "no runs recorded" in empty.stdout


def test_not_recovering_where_the_good_run_did_fails_and_a_rerun_replaces_its_entry(
    tmp_path: Path,
) -> None:
    db = tmp_path / "history.db"
    good = record_run(db, RunResult.from_json(result("r1", 1.0)), tmp_path / "r1.json")
    stuck = record_run(
        db, RunResult.from_json(result("r2", 2.0, recovery={"p50": None})), tmp_path / "r2.json"
    )
    assert last_good(db, "backend-down", stuck) == good
    decision = compare_runs(stuck, good)
    assert not decision.passed
    assert decision.reasons == ["p50 did not recover, where run r1 recovered in 2.0 s"]
    record_run(
        db, RunResult.from_json(result("r2", 2.0)), tmp_path / "r2.json"
    )  # the same run recorded again
    assert [r.run for r in runs(db)] == ["r1", "r2"] and runs(db)[1].recovery == {"p50": 2.0}
    with pytest.raises(ValueError, match="at least 1"):
        compare_runs(stuck, good, ratio=0.5)


def test_the_gate_refuses_what_is_not_a_result(tmp_path: Path) -> None:
    given = tmp_path / "notes.txt"
    given.write_text("hello")
    done = gate(given, tmp_path / "reports")
    assert done.returncode == 2 and "is not JSON: give a run's result.json" in done.stderr
    assert not (tmp_path / "reports").exists()  # nothing written
