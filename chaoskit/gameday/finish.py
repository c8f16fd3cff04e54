"""After a run: its reports (report.html, junit.xml, summary.md) and its entry in the run
history, made the same way for ``chaoskit run``, game days and the pytest plugin.

Neither may change what the run found: a report or history entry that cannot be written is
said in words, never raised, and the run's verdict and exit code stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..model.result import RunResult
from ..report import ReportError, write_reports
from .history import HistoryError, history_db, record_run

__all__ = ["Finished", "finish_run"]


@dataclass(frozen=True)
class Finished:
    """What the after-run step wrote, and what it could not."""

    written: list[Path] = field(default_factory=list)
    """The report files, in the run's folder."""
    problems: list[str] = field(default_factory=list)
    """Each thing that could not be written, in words."""


def finish_run(
    result_path: Path, result: RunResult, reports: Path, *, unwritten: str | None = None
) -> Finished:
    """Write the reports beside ``result_path`` and record the run in ``reports``' history;
    ``unwritten`` is why result.json itself could not be written (then neither is tried)."""
    if unwritten is not None:
        return Finished(problems=[f"result.json not written ({unwritten}): no report, no history"])
    written: list[Path] = []
    problems = []
    try:
        reports_written = write_reports(result_path)
    except ReportError as exc:
        problems.append(f"no report: {exc}")
    else:
        written = reports_written.written
        problems.extend(f"report {problem}" for problem in reports_written.problems)
    try:
        record_run(history_db(reports), result, result_path)
    except HistoryError as exc:
        problems.append(f"not recorded in the history: {exc}")
    return Finished(written, problems)
