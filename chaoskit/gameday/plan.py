"""Running a game day: every experiment of a plan checked first, then run in order (stopping at
the first that does not hold, if the plan says so), each with its reports and history entry,
then the day's own report and the webhook. A stop signal (SIGINT, SIGTERM, SIGHUP) stops the
experiment running then as it stops ``chaoskit run``, and the rest of the plan is not run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..loader import LoadError, load_experiment, load_model
from ..model import Experiment
from ..model.gameday import GameDayPlan
from ..runner.run import PreflightError, run_experiment
from ..runner.stopping import StopSignals
from ..runner.system import BringUpError
from ..safety.policy import Policy
from .finish import finish_run

__all__ = ["DayResult", "ExperimentOutcome", "PlanError", "load_plan", "run_plan"]


class PlanError(Exception):
    """The plan cannot run (now, or at all); the message says why. Nothing was touched."""


@dataclass
class ExperimentOutcome:
    """How one experiment of the day ended."""

    file: str
    name: str
    outcome: str
    """held, deviated, inconclusive, aborted, error, refused, or skipped (not reached)."""
    exit_code: int | None = None
    run: str | None = None
    report: str | None = None
    message: str | None = None


@dataclass
class DayResult:
    """The game day: what ran, how each ended, and where it is written."""

    plan: str
    started: str
    finished: str = ""
    forced: bool = False
    stopped_early: str | None = None
    stopped_by: str | None = None
    """The stop signal that ended the day before its plan was done (SIGINT, SIGTERM, SIGHUP)."""
    experiments: list[ExperimentOutcome] = field(default_factory=list)
    folder: str = ""

    @property
    def outcome(self) -> str:
        """held if every experiment held; else the first ending that did not (aborted when a stop
        signal left the rest of the plan unrun after experiments that held)."""
        for entry in self.experiments:
            if entry.outcome == "skipped":
                return "aborted" if self.stopped_by else "incomplete"
            if entry.outcome != "held":
                return entry.outcome
        return "held"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, for gameday.json and the webhook."""
        return {"schema": "chaoskit.gameday/1", **asdict(self), "outcome": self.outcome}


def load_plan(path: Path) -> GameDayPlan:
    """Load a plan file; raises LoadError (with file, line and field) when it is not one."""
    return load_model(path, GameDayPlan)


def _experiments(plan: GameDayPlan, plan_path: Path) -> list[tuple[str, Path, Experiment]]:
    """Every experiment of the plan, loaded and checked before any runs."""
    found = []
    problems = []
    for name in plan.experiments:
        path = (plan_path.parent / name).resolve()
        try:
            found.append((name, path, load_experiment(path)))
        except LoadError as error:
            problems.append(f"{name}:\n{error}")
    if problems:
        raise PlanError("the plan's experiments are not all valid:\n" + "\n".join(problems))
    return found


async def run_plan(
    plan: GameDayPlan,
    plan_path: Path,
    *,
    reports: Path,
    policy: Policy,
    now: datetime,
    force: bool = False,
    log: Callable[[str], None] = print,
    stop_signals: StopSignals | None = None,
) -> DayResult:
    """Run the plan at ``now`` (refused outside its windows or on a blackout date unless
    ``force``); each run's reports and history entry are written as ``chaoskit run`` writes
    them (:mod:`.finish`), and what could not be is logged.

    ``stop_signals``: the caller's catcher, in force for the whole day. Its first signal stops
    the experiment running then (every fault reverted, its result and reports written, as
    ``chaoskit run`` stops) and no further experiment starts; a signal between experiments
    stops the day before the next. Without one, each experiment catches the signals itself
    while it runs, and the day goes on after it."""
    refusals = plan.refusals(now)
    if refusals and not force:
        raise PlanError(
            f"game day '{plan.name}' may not run now: {'; '.join(refusals)} (--force overrides)"
        )
    experiments = _experiments(plan, plan_path)
    # The site policy's windows and blackouts hold at the day's start (--force does not override
    # them), and again as each experiment starts (run_experiment checks them by the clock).
    violations = [f"{n}: {v}" for n, _, exp in experiments for v in policy.check(exp, now=now)]
    if violations:
        raise PlanError("the site policy refuses: " + "; ".join(violations))
    day = DayResult(plan.name, now.isoformat(timespec="seconds"), forced=bool(refusals))
    folder = reports / f"gameday-{plan.name}-{now.astimezone(UTC):%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    day.folder = str(folder)
    remaining = list(experiments)
    while remaining:
        signalled = stop_signals.first if stop_signals is not None else None
        if signalled is not None:  # between experiments: none starts after it
            _stop(day, remaining, signalled, f"{signalled} stopped the game day")
            break
        name, source, experiment = remaining.pop(0)
        log(f"game day {plan.name}: {name}")
        entry = await _run_one(
            name, experiment, source=source, reports=reports, policy=policy, log=log,
            stop_signals=stop_signals,
        )  # fmt: skip
        day.experiments.append(entry)
        signalled = stop_signals.first if stop_signals is not None else None
        if signalled is not None:
            _stop(day, remaining, signalled, f"{signalled} stopped the game day during {name}")
            break
        if plan.stop_on_deviation and entry.outcome not in ("held", "inconclusive"):
            day.stopped_early = f"{name} ended {entry.outcome}; stop_on_deviation is set"
            day.experiments += [
                ExperimentOutcome(n, e.name, "skipped", message="not run: stopped early")
                for n, _, e in remaining
            ]
            break
    day.finished = datetime.now(UTC).isoformat(timespec="seconds")
    (folder / "gameday.json").write_text(json.dumps(day.to_json(), indent=1))
    return day


def _stop(
    day: DayResult, remaining: list[tuple[str, Path, Experiment]], signal: str, why: str
) -> None:
    """A stop signal ends the day: what is left of the plan is not run, and the day says so."""
    day.stopped_by = signal
    day.stopped_early = why
    day.experiments += [
        ExperimentOutcome(n, e.name, "skipped", message=f"not run: stopped by {signal}")
        for n, _, e in remaining
    ]
    remaining.clear()


async def _run_one(
    name: str,
    experiment: Experiment,
    *,
    source: Path,
    reports: Path,
    policy: Policy,
    log: Callable[[str], None],
    stop_signals: StopSignals | None,
) -> ExperimentOutcome:
    # An experiment that declares `kill_switch.signals: false` is not stopped by a signal: it
    # runs to its end, and the day stops after it.
    catcher = stop_signals if experiment.safety.kill_switch.signals else None
    try:
        outcome = await run_experiment(
            experiment, policy=policy, reports=reports, log=log, source=source,
            stop_signals=catcher,
        )  # fmt: skip
    except PreflightError as error:
        return ExperimentOutcome(name, experiment.name, "refused", 2, message=str(error))
    except BringUpError as error:
        return ExperimentOutcome(name, experiment.name, "error", 6, message=str(error))
    finished = finish_run(
        outcome.run_dir / "result.json", outcome.result, reports, unwritten=outcome.unwritten
    )
    for problem in finished.problems:
        log(f"game day: {name}: {problem}")
    report = outcome.run_dir / "report.html"
    return ExperimentOutcome(
        name,
        experiment.name,
        outcome.verdict,
        int(outcome.exit_code),
        outcome.run_dir.name,
        str(report) if report.exists() else None,
        outcome.result.error,
    )
