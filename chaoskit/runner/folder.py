"""A run's folder under ``reports/``: refused before anything is touched when it cannot be
written or its disk is nearly full, watched while the run lasts (the valve stops the run while
its reverts, result and reports still fit), and ``result.json`` written last."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..model.result import RunResult
from .errors import PreflightError
from .journal import Journal, JournalError

__all__ = ["MIN_FREE", "RESERVE", "free_bytes", "open_run_folder", "room_left", "write_result"]

MIN_FREE = 32 * 2**20
"""A run does not start with less free under ``reports/``."""
RESERVE = 8 * 2**20
"""A run stops (reverting everything) when less is left: what its records still need."""


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged writer can still use on ``folder``'s filesystem."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def open_run_folder(reports: Path, run_id: str) -> tuple[Path, Journal]:
    """Create ``reports/<run_id>/`` and its journal, or refuse (PreflightError) with nothing
    touched: a folder that cannot be written, or a disk with less than :data:`MIN_FREE`."""
    advice = "free some space, fix its permissions, or pass --reports DIR"
    try:
        reports.mkdir(parents=True, exist_ok=True)
        free = free_bytes(reports)
    except OSError as error:
        raise PreflightError(f"cannot write under {reports}/: {error.strerror}: {advice}") from None
    if free < MIN_FREE:
        raise PreflightError(
            f"only {_mib(free)} free under {reports}/; a run needs {_mib(MIN_FREE)} for its "
            f"journal, result and reports: {advice}"
        )
    run_dir = reports / run_id
    try:
        run_dir.mkdir()
    except OSError as error:
        raise PreflightError(f"cannot create {run_dir}: {error.strerror}: {advice}") from None
    try:
        return run_dir, Journal.create(run_dir / "journal.jsonl", run_id)
    except JournalError as error:
        run_dir.rmdir()
        raise PreflightError(f"{error}: {advice}") from None


def room_left(run_dir: Path) -> tuple[str, str] | None:
    """Why the run must stop now for want of disk (a valve guard), or None."""
    try:
        free = free_bytes(run_dir)
    except OSError as error:
        return "disk", f"cannot see how much room is left under {run_dir}: {error.strerror}"
    if free >= RESERVE:
        return None
    return "disk", (
        f"only {_mib(free)} left under {run_dir.parent}/ (below the {_mib(RESERVE)} a run keeps "
        "for its reverts, result and reports)"
    )


def write_result(run_dir: Path, result: RunResult) -> str | None:
    """Write ``result.json`` (whole or not at all); why it could not be, if it could not."""
    path = run_dir / "result.json"
    partial = path.with_name(".result.json.partial")
    try:
        partial.write_text(json.dumps(result.to_json(), indent=1, allow_nan=False))
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        return f"cannot write {path}: {error.strerror}"
    return None
