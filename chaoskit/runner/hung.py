"""What a run leaves when its watchdog had to kill it for hanging: the runner writes
``started.json`` before anything is touched; the watchdog, having killed the hung runner and
reverted its faults, turns it into a ``result.json`` (outcome ``aborted``, reason ``hung``)
and has ``chaoskit report --record`` draw the reports and add the run to the history, so a
killed run shows up like any other."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..exitcodes import ExitCode
from ..model import Experiment
from ..model.result import RESULT_SCHEMA, RunResult
from .folder import write_result
from .result import source_of

__all__ = ["STARTED", "record_hung_run", "write_started"]

STARTED = "started.json"
"""The run's first record, beside its journal."""


def write_started(run_dir: Path, run_id: str, experiment: Experiment, source: Path | None) -> None:
    """Record what the watchdog needs to write this run's result if it has to kill it."""
    document = {
        "run": run_id,
        "experiment": experiment.model_dump(mode="json", by_alias=True),
        "source": None if source is None else source_of(source),
        "started": time.time(),
    }
    (run_dir / STARTED).write_text(json.dumps(document, allow_nan=False))


def hung_result(started: dict[str, Any], detail: str) -> RunResult:
    """The result of a run the watchdog killed: no verdict, the reason and what it reverted."""
    document = {
        "schema": RESULT_SCHEMA,
        "run": started["run"],
        "experiment": started["experiment"],
        "source": started.get("source"),
        "started": started.get("started"),
        "outcome": "aborted",
        "exit_code": int(ExitCode.KILLED),
        "ports": {},
        "draws": {},
        "fronts": {},
        "sequential": None,
        "phases": [],
        "faults": [],
        "safety": {"reason": "hung", "detail": detail, "at": None, "metric": None, "value": None},
        "valve": {"conditions": []},
        "steady_state": None,
        "error": None,
        "stopped": None,
        "verdict": None,
        "samples": None,
        "probes": {},
        "host": os.uname().nodename,
        "chaoskit": __version__,
        "python": platform.python_version(),
    }
    return RunResult.model_validate(document)


def record_hung_run(run_dir: Path, detail: str) -> list[str]:
    """Write the killed run's result, reports and history entry; say what was done (never
    raises: the faults are already reverted, and this is only the record)."""
    result_path = run_dir / "result.json"
    if result_path.exists():  # the runner got that far before it hung
        return [f"result: {result_path} (written by the runner)"]
    try:
        started = json.loads((run_dir / STARTED).read_text())
    except (OSError, ValueError) as error:
        return [f"result: NOT WRITTEN: cannot read {run_dir / STARTED}: {error}"]
    failed = write_result(run_dir, hung_result(started, detail))
    if failed is not None:
        return [f"result: NOT WRITTEN: {failed}"]
    said = [f"result: {result_path}"]
    argv = [
        sys.executable, "-m", "chaoskit", "report", str(result_path),
        "--record", str(run_dir.parent),
    ]  # fmt: skip
    try:
        drawn = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [*said, f"reports: NOT WRITTEN: {error}"]
    if drawn.returncode != 0:
        return [*said, f"reports: NOT WRITTEN: {drawn.stderr.strip()[-500:]}"]
    return [*said, *(f"wrote {line}" for line in drawn.stdout.splitlines())]
