"""After a run, the same step for `chaoskit run`, game days and the pytest plugin: reports and
the history entry, each failure said in words and never raised (the verdict stands)."""

from __future__ import annotations

from pathlib import Path

from chaoskit.gameday.finish import finish_run
from chaoskit.model.result import RESULT_SCHEMA, RunResult

RESULT = RunResult.from_json(
    {
        "schema": RESULT_SCHEMA,
        "run": "20260105-100000-x",
        "experiment": {"name": "x"},
        "outcome": "completed",
        "exit_code": 0,
        "verdict": {"metrics": []},
    }
)


def test_what_cannot_be_written_is_said_and_the_rest_is_still_tried(tmp_path: Path) -> None:
    """A result.json that is gone (no report) and a history that is a folder (no entry): two
    problems in words, no exception. Real files, a real SQLite error."""
    (tmp_path / "history.db").mkdir()
    finished = finish_run(tmp_path / "run" / "result.json", RESULT, tmp_path)
    assert finished.written == []
    [report, history] = finished.problems
    assert report.startswith("no report: cannot read") and "result.json" in report
    assert history.startswith("not recorded in the history: history ") and "history.db" in history


def test_a_result_never_written_is_said_and_nothing_else_is_tried(tmp_path: Path) -> None:
    finished = finish_run(tmp_path / "result.json", RESULT, tmp_path, unwritten="disk full")
    assert finished.problems == ["result.json not written (disk full): no report, no history"]
    assert not (tmp_path / "history.db").exists()
