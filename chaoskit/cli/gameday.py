"""``chaoskit gameday``: run a plan now, serve its schedule, or show where plans stand."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..exitcodes import ExitCode
from ._shared import ReportsOption, exit_on_bad_input

if TYPE_CHECKING:
    from ..gameday.plan import DayResult
    from ..model.gameday import GameDayPlan
    from ..runner.stopping import StopSignals
    from ..safety.policy import Policy

gameday_app = typer.Typer(
    help="Game days: plans of experiments run in order, on a schedule, within windows.",
    no_args_is_help=True,
)

_EXIT = {
    "held": ExitCode.HELD,
    "deviated": ExitCode.DEVIATED,
    "refused": ExitCode.INVALID,
    "aborted": ExitCode.ABORTED,
    "inconclusive": ExitCode.INCONCLUSIVE,
    "not_steady": ExitCode.NOT_STEADY,
    "error": ExitCode.FAILED,
}

PolicyOption = Annotated[
    Path | None, typer.Option("--policy", help="Site policy file (default: as for run).")
]


def _load(plan_path: Path, policy: Path | None) -> tuple[GameDayPlan, Policy]:
    from ..gameday.plan import load_plan
    from ..safety.policy import find_policy

    with exit_on_bad_input("gameday"):
        return load_plan(plan_path), find_policy(policy)[0]


async def _day(
    plan: GameDayPlan,
    plan_path: Path,
    *,
    reports: Path,
    site: Policy,
    now: datetime,
    force: bool,
    stop_signals: StopSignals,
) -> DayResult:
    """Run the day, write every report, tell the webhook; the first stop signal ends the day
    (the experiment running then stops as ``chaoskit run`` stops; no other starts)."""
    from ..gameday.notify import notify
    from ..gameday.plan import run_plan
    from ..report.gameday import write_day_reports

    log = lambda line: typer.echo(line, err=True)  # noqa: E731
    day = await run_plan(plan, plan_path, reports=reports, policy=site, now=now, force=force,
                         log=log, stop_signals=stop_signals)  # fmt: skip
    write_day_reports(day.to_json(), plan.description)
    notify(plan.notify, day, log)
    return day


@gameday_app.command("run")
def run(
    plan: Annotated[Path, typer.Argument(help="The game-day plan file.")],
    force: Annotated[bool, typer.Option(help="Run even outside the plan's windows.")] = False,
    reports: ReportsOption = Path("reports"),
    policy: PolicyOption = None,
) -> None:
    """Run a plan's experiments now, in order.

    Refused outside the plan's windows or on a blackout date unless --force. Exit code: as for
    run, for the first experiment that did not hold. SIGINT (Ctrl-C), SIGTERM or SIGHUP stops
    the experiment running then as it stops `chaoskit run` (every fault reverted, its reports
    written), and the rest of the plan is not run (exit 3 unless one already did not hold).
    """
    import asyncio

    from ..gameday.plan import PlanError
    from ..runner.stopping import StopSignals

    loaded, site = _load(plan, policy)
    # From here to the day's last report, the first stop signal ends the day; the later ones
    # are only acknowledged.
    with StopSignals() as stop_signals:
        try:
            now = datetime.now(UTC)
            day = asyncio.run(
                _day(loaded, plan, reports=reports, site=site, now=now, force=force,
                     stop_signals=stop_signals)
            )  # fmt: skip
        except PlanError as exc:
            typer.echo(f"chaoskit gameday run: refused, nothing was touched: {exc}", err=True)
            raise typer.Exit(ExitCode.INVALID) from None
        _tell_day(day)
    raise typer.Exit(_EXIT.get(day.outcome, ExitCode.INTERNAL))


def _tell_day(day: DayResult) -> None:
    typer.echo(f"game day {day.plan}: {day.outcome}")
    if day.stopped_early:
        typer.echo(f"  stopped early: {day.stopped_early}")
    for entry in day.experiments:
        note = f" ({entry.message})" if entry.message else ""
        typer.echo(f"  {entry.file}: {entry.outcome}{note}")
    typer.echo(f"  report: {Path(day.folder) / 'gameday.html'}")


@gameday_app.command("schedule")
def schedule(
    plan: Annotated[Path, typer.Argument(help="The game-day plan file (with a schedule).")],
    reports: ReportsOption = Path("reports"),
    policy: PolicyOption = None,
) -> None:
    """Serve a plan's schedule until SIGINT, SIGTERM or SIGHUP; each slot runs once.

    Slots are claimed in reports/gamedays/PLAN.json before they run, so a restarted scheduler
    never runs a slot twice. A signal between slots ends the scheduler at once (exit 0); one
    during a slot stops that slot's game day as `chaoskit gameday run` stops (every fault
    reverted, its reports written), records the slot as stopped, and ends the scheduler
    (exit 3) instead of waiting for the next slot.
    """
    import asyncio

    from ..gameday.plan import PlanError
    from ..gameday.schedule import Scheduler, SchedulerBusy, state_path
    from ..runner.stopping import StopSignals

    loaded, site = _load(plan, policy)
    if loaded.schedule is None:
        typer.echo(f"chaoskit gameday schedule: plan '{loaded.name}' has no schedule", err=True)
        raise typer.Exit(ExitCode.INVALID)
    log = lambda line: typer.echo(line, err=True)  # noqa: E731

    # The scheduler's whole life, slots and waits alike, is under one catcher: the day running
    # a slot hands its first signal to the experiment running then (see run_plan).
    with StopSignals() as stop_signals:

        async def one(slot: datetime) -> str:
            try:
                day = await _day(loaded, plan, reports=reports, site=site, now=slot,
                                 force=False, stop_signals=stop_signals)  # fmt: skip
            except PlanError as exc:
                typer.echo(f"slot {slot.isoformat()}: refused: {exc}", err=True)
                return "refused"
            return day.outcome

        scheduler = Scheduler(loaded, state_path(reports, loaded), one, log=log)
        try:
            cut_short = asyncio.run(scheduler.serve(stop_signals))
        except SchedulerBusy as exc:
            typer.echo(f"chaoskit gameday schedule: {exc}", err=True)
            raise typer.Exit(ExitCode.INVALID) from None
    if cut_short is not None:
        typer.echo(
            f"chaoskit gameday schedule: {stop_signals.first} stopped slot {cut_short}; "
            "the scheduler ends",
            err=True,
        )
        raise typer.Exit(ExitCode.ABORTED)
    typer.echo(f"chaoskit gameday schedule: {stop_signals.first}: the scheduler ends", err=True)


@gameday_app.command("status")
def status(
    plans: Annotated[
        list[Path] | None,
        typer.Argument(help="Plan files (default: experiments/gamedays/*.yaml)."),
    ] = None,
    reports: ReportsOption = Path("reports"),
) -> None:
    """Each plan's schedule, next slot, whether it may run now, and its last slots."""
    from ..gameday.schedule import Scheduler, next_slot, state_path

    files = plans or sorted(Path("experiments/gamedays").glob("*.yaml"))
    if not files:
        typer.echo("no game-day plans (experiments/gamedays/*.yaml, or name them)")
        return
    now = datetime.now(UTC)
    for path in files:
        loaded, _ = _load(path, None)
        upcoming = next_slot(loaded, now)
        refusals = loaded.refusals(now)
        typer.echo(f"{loaded.name} ({path})")
        if loaded.schedule is not None:
            typer.echo(f"  schedule: {loaded.schedule.cron} ({loaded.schedule.timezone}); "
                       f"next: {upcoming.isoformat() if upcoming else '-'}")  # fmt: skip
        else:
            typer.echo("  schedule: none (run by hand)")
        typer.echo(f"  may run now: {'no: ' + '; '.join(refusals) if refusals else 'yes'}")
        if loaded.schedule is not None:
            slots = Scheduler(loaded, state_path(reports, loaded), _never).slots()
            for key, entry in list(slots.items())[-3:]:
                said = entry.get("outcome") or entry.get("why") or ""
                typer.echo(f"  slot {key}: {entry.get('state')} {said}")


async def _never(slot: datetime) -> str:  # status only reads the state file
    raise AssertionError(f"status never runs a slot ({slot})")
