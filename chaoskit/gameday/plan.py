"""Running a game day: every experiment of a plan checked first, then run in order (stopping at
the first that does not hold, if the plan says so), each with its reports and history entry,
then the day's own report and the webhook."""

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
from ..runner.system import BringUpError
from ..safety.policy import Policy
from .history import history_db, record_run

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
    experiments: list[ExperimentOutcome] = field(default_factory=list)
    folder: str = ""

    @property
    def outcome(self) -> str:
        """held if every experiment held; else the first ending that did not."""
        for entry in self.experiments:
            if entry.outcome != "held":
                return entry.outcome if entry.outcome != "skipped" else "incomplete"
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
    finish_run: Callable[[Path], None] | None = None,
) -> DayResult:
    """Run the plan at ``now`` (refused outside its windows or on a blackout date unless
    ``force``); ``finish_run`` gets each run's result.json (to write its reports)."""
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
        name, source, experiment = remaining.pop(0)
        log(f"game day {plan.name}: {name}")
        entry = await _run_one(
            name, experiment, source=source, reports=reports, policy=policy, log=log,
            finish_run=finish_run,
        )  # fmt: skip
        day.experiments.append(entry)
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


async def _run_one(
    name: str,
    experiment: Experiment,
    *,
    source: Path,
    reports: Path,
    policy: Policy,
    log: Callable[[str], None],
    finish_run: Callable[[Path], None] | None,
) -> ExperimentOutcome:
    try:
        outcome = await run_experiment(
            experiment, policy=policy, reports=reports, log=log, source=source
        )
    except PreflightError as error:
        return ExperimentOutcome(name, experiment.name, "refused", 2, message=str(error))
    except BringUpError as error:
        return ExperimentOutcome(name, experiment.name, "error", 6, message=str(error))
    result_path = outcome.run_dir / "result.json"
    if finish_run is not None:
        finish_run(result_path)
    record_run(history_db(reports), outcome.result, result_path)
    report = outcome.run_dir / "report.html"
    return ExperimentOutcome(
        name,
        experiment.name,
        outcome.verdict,
        int(outcome.exit_code),
        outcome.run_dir.name,
        str(report) if report.exists() else None,
        outcome.result.get("error"),
    )
