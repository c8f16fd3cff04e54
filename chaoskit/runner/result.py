"""The run's result (``model/result.py``, written as ``result.json``) and its exit code."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from .. import __version__
from ..exitcodes import ExitCode
from ..load import send_figures
from ..model.result import RESULT_SCHEMA, Judged, RunResult
from ..safety.valve import Trip
from ..stats import Verdict
from .running import Run
from .steady import SteadyCheck

__all__ = ["RESULT_SCHEMA", "outcome_of", "result_document", "source_of"]


def outcome_of(
    trip: Trip | None,
    error: str | None,
    verdict: Judged | None,
    steady: SteadyCheck | None = None,
    stopped: str | None = None,
) -> tuple[str, ExitCode]:
    """The run's outcome word and exit code: a system not steady before any fault, an abort
    and an error outrank any verdict; a run stopped before any trial (its target gone) could
    show nothing."""
    if steady is not None and not steady.held and error is None:
        return "not_steady", ExitCode.NOT_STEADY
    if trip is not None:
        return "aborted", ExitCode.ABORTED
    if error is None and verdict is None and stopped is not None:
        return "inconclusive", ExitCode.INCONCLUSIVE
    if error is not None:
        return "error", ExitCode.FAILED
    if verdict is None:  # every other way to end without a verdict is covered above
        return "error", ExitCode.INTERNAL
    outcome = str(verdict.verdict)
    codes = {Verdict.HELD.value: ExitCode.HELD, Verdict.DEVIATED.value: ExitCode.DEVIATED}
    return outcome, codes.get(outcome, ExitCode.INCONCLUSIVE)


def result_document(
    run: Run,
    *,
    source: Path | None,
    outcome: str,
    code: ExitCode,
    ports: dict[str, int],
    trip: Trip | None,
    error: str | None,
    verdict: Judged | None,
    event_loop: dict[str, Any] | None = None,
) -> RunResult:
    """Everything about one run, from the run object and how it ended: the experiment as run
    and as written, draws, phases, fault events, the valve's decision and what each condition
    saw, the steady-state check before any fault, verdicts, the files that hold every request
    and probe reading, how well the load generator kept to its schedule, how late the runner's
    event loop ran, and the environment."""
    experiment, valve, steady, sequential = run.exp, run.valve, run.steady, run.sequential
    document = {
        "schema": RESULT_SCHEMA,
        "run": run.run_id,
        "experiment": experiment.model_dump(mode="json", by_alias=True),
        "source": None if source is None else source_of(source),
        "outcome": outcome,
        "exit_code": int(code),
        "ports": ports,
        "draws": {key: d.to_json() for key, d in run.draws.items()},
        "fronts": run.fronts.to_json(),
        "sequential": None if sequential is None else sequential.to_json(),
        "phases": run.phases,
        "faults": run.faults.events,
        "safety": None
        if trip is None
        else {
            "reason": trip.reason,
            "detail": trip.detail,
            "at": trip.at,
            "metric": trip.metric,
            "value": trip.value,
        },
        "valve": {"conditions": [r.to_json() for r in valve.records] if valve else []},
        "steady_state": None if steady is None else steady.to_json(),
        "error": error,
        "stopped": run.stopped,
        "verdict": verdict,
        "samples": run.samples.stored(),
        "probes": {name: series.stored() for name, series in run.probes.items()},
        "load": None
        if experiment.load is None
        else {"workers": experiment.load.workers, **send_figures(run.samples.chunks())},
        "event_loop": event_loop,
        "host": os.uname().nodename,
        "chaoskit": __version__,
        "python": platform.python_version(),
    }
    return RunResult.model_validate(document)


def source_of(path: Path) -> dict[str, str] | None:
    """The experiment file as written (None if it cannot be read any more)."""
    try:
        return {"path": str(path), "text": path.read_text(encoding="utf-8")}
    except OSError:
        return None
