"""``chaoskit run``, ``halt`` and ``rollback``: a run's life, and what is left after it."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..exitcodes import ExitCode
from ._shared import ReportsOption, VarOption, exit_on_bad_input, parse_vars

if TYPE_CHECKING:
    from ..model.result import RunResult
    from ..runner.run import RunOutcome


def run(
    path: Annotated[Path, typer.Argument(help="The experiment file.")],
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Site policy file (default: as for validate)."),
    ] = None,
    var: VarOption = None,
    reports: Annotated[Path, typer.Option(help="Where the run's folder is written.")] = Path(
        "reports"
    ),
) -> None:
    """Run an experiment: bring the system up, inject, observe, revert, judge, tear down.

    Exit 0 held, 1 deviated (a metric beyond its margin or limit, or not back in time), 2
    refused before anything was touched, 3 aborted (by the safety valve, `chaoskit halt`,
    Ctrl-C or another stop signal, a nearly full disk or a dead watchdog; after every fault
    was reverted), 4 inconclusive, 5 not steady before any fault (nothing injected), 6 failed
    (the system did not come up, a driver lost its backend or could not revert), 70 a bug.
    """
    import asyncio

    from ..loader import load_experiment
    from ..report.console import RunConsole
    from ..runner.run import PreflightError, run_experiment
    from ..runner.system import BringUpError
    from ..safety.policy import find_policy

    with exit_on_bad_input("run"):
        experiment = load_experiment(path, variables=parse_vars(var or []))
        site, _ = find_policy(policy)
    from ..runner.stopping import StopSignals

    roll_back_stale(reports)  # it may ask a question: Ctrl-C there ends the command (130)
    # From here to the last report, the first SIGINT/SIGTERM/SIGHUP stops the run (every
    # fault reverted, every report written) and the later ones are only acknowledged.
    catching = experiment.safety.kill_switch.signals
    with StopSignals() if catching else contextlib.nullcontext() as stop_signals:
        try:
            with RunConsole() as console:
                outcome = asyncio.run(
                    run_experiment(
                        experiment,
                        policy=site,
                        reports=reports,
                        log=console.log,
                        follow=console.follow,
                        source=path,
                        stop_signals=stop_signals,
                    )
                )
        except PreflightError as exc:
            typer.echo(f"chaoskit run: refused, nothing was touched: {exc}", err=True)
            raise typer.Exit(ExitCode.INVALID) from None
        except BringUpError as exc:
            typer.echo(f"chaoskit run: the system did not come up: {exc}", err=True)
            raise typer.Exit(ExitCode.FAILED) from None
        tell_outcome(experiment.name, outcome)
        if outcome.unwritten is None:  # tell_outcome has said why there is nothing to report
            write_run_reports(outcome.run_dir / "result.json", outcome.result, reports)
    raise typer.Exit(outcome.exit_code)


def roll_back_stale(reports: Path) -> None:
    """Refuse (exit 2) while an earlier run's journal names something left applied, unless the
    person at the terminal has it rolled back now."""
    import asyncio

    from ..runner.journal import find_stale
    from ..runner.rollback import rollback as replay

    stale = find_stale(reports)
    if not stale:
        return
    for state in stale:
        typer.echo(
            f"an earlier run left something behind: {state.path} ({state.trouble()})", err=True
        )
    if any(s.damaged for s in stale):
        typer.echo(
            "a damaged journal may name faults that are still applied: run `chaoskit rollback`, "
            "check what it cannot read by hand, then `chaoskit rollback --dismiss RUN`",
            err=True,
        )
        raise typer.Exit(ExitCode.INVALID)
    if not (sys.stdin.isatty() and typer.confirm("Roll them back now?", err=True)):
        typer.echo("chaoskit run: refused; run `chaoskit rollback` first", err=True)
        raise typer.Exit(ExitCode.INVALID)
    for state in stale:
        done = asyncio.run(replay(state.path))
        if not done.ok:
            typer.echo(f"chaoskit run: {state.path} could not be rolled back fully", err=True)
            raise typer.Exit(ExitCode.INVALID)
        typer.echo(f"rolled back {state.path}", err=True)


def tell_outcome(name: str, outcome: RunOutcome) -> None:
    """The verdict and why, on the console."""
    from ..report.words import cautions, recovery_in_words, valve_in_words

    result = outcome.result
    verdict = result.verdict
    typer.echo(f"{name}: {outcome.verdict}")
    for problem in result.steady_state.problems if result.steady_state is not None else []:
        typer.echo(f"  not steady before any fault: {problem}")
    if result.safety is not None and outcome.verdict != "not_steady":
        typer.echo(f"  aborted: {result.safety.detail} (every fault was reverted first)")
    if result.error:
        typer.echo(f"  error: {result.error}")
    for metric in verdict.metrics if verdict is not None else []:
        typer.echo(f"  {metric.metric}: {metric.verdict} — {metric.reason}")
    for line in recovery_in_words(result):
        typer.echo(f"  recovery: {line}")
    stopped = (verdict.stopped_early if verdict is not None else None) or result.stopped
    if stopped:
        typer.echo(f"  stopped early: {stopped}")
    for line in valve_in_words(result):
        typer.echo(f"  safety valve: {line}")
    for line in cautions(result):
        typer.echo(f"  caution: {line}")
    if outcome.unrecorded:
        typer.echo(
            f"  journal: {outcome.unrecorded}; every fault was reverted, but the journal still "
            "names some: `chaoskit rollback` (once there is room) clears it",
            err=True,
        )
    if outcome.unwritten:
        typer.echo(f"  result: NOT WRITTEN: {outcome.unwritten}; no report either", err=True)
    else:
        typer.echo(f"  result: {outcome.run_dir / 'result.json'}")


def write_run_reports(result_path: Path, result: RunResult, reports: Path) -> None:
    """report.html, junit.xml, summary.md and the history entry; a failure is said, and the
    verdict (and exit code) stands."""
    from ..gameday.finish import finish_run

    finished = finish_run(result_path, result, reports)
    for written in finished.written:
        typer.echo(f"  {written.stem}: {written}")
    for problem in finished.problems:
        typer.echo(f"chaoskit run: {problem}", err=True)


def halt(
    reports: ReportsOption = Path("reports"),
    wait: Annotated[
        float,
        typer.Option(help="Seconds to wait for each run to end (0: do not wait)."),
    ] = 60.0,
) -> None:
    """Stop every run going on under --reports now (each reverts its faults and writes its
    reports first), and wait until they have ended.

    Exit 0 when every run ended (or none was going on), 1 when one is still going after --wait
    seconds, 2 when a run cannot be told to stop.
    """
    import time

    from ..runner.journal import JournalError, journals_under, read_journal

    going = []
    for journal in journals_under(reports):
        try:
            state = read_journal(journal)
        except JournalError:
            continue  # an unreadable journal's writer cannot be known: `run` reports it
        if state.owner_alive and not state.closed:
            try:
                (journal.parent / "HALT").touch()
            except OSError as exc:
                typer.echo(
                    f"chaoskit halt: cannot create {journal.parent / 'HALT'}: {exc.strerror}; "
                    f"stop run {state.run} with `kill -TERM {state.pid}`",
                    err=True,
                )
                raise typer.Exit(ExitCode.INVALID) from None
            typer.echo(f"halting run {state.run} (pid {state.pid})")
            going.append(state)
    if not going:
        typer.echo(f"no run is going on under {reports}/")
        return
    deadline = time.monotonic() + wait
    while wait and time.monotonic() < deadline:
        going = [state for state in going if state.owner_alive]
        if not going:
            typer.echo("every run has ended (its faults reverted)")
            return
        time.sleep(0.2)  # polling a pid: no event to await across processes
    if wait:
        for state in going:
            typer.echo(
                f"run {state.run} (pid {state.pid}) is still going after {wait:g}s", err=True
            )
        raise typer.Exit(1)


def rollback(
    journals: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Journals (or run folders holding journal.jsonl). "
            "None: every stale journal under --reports.",
            show_default=False,
        ),
    ] = None,
    reports: ReportsOption = Path("reports"),
    dismiss: Annotated[
        bool,
        typer.Option(
            "--dismiss",
            help="Take over what the named journals may still name (damaged lines, faults "
            "that cannot be reverted) after checking by hand: they stop blocking new runs.",
        ),
    ] = False,
    patience: Annotated[
        float,
        typer.Option(
            "--patience",
            min=0,
            help="Seconds to keep trying an engine or Toxiproxy server that does not answer "
            "before leaving its faults in the journal.",
        ),
    ] = 30.0,
) -> None:
    """Revert every fault a run's journal says is still applied, and say what was done.

    Exit 0 when nothing is left applied, 1 when some fault could not be reverted (each is
    named) or a journal has damaged lines that may name one, 2 when a path is not a journal.
    """
    from ..runner.journal import JournalError, find_stale

    if dismiss and not journals:
        raise typer.BadParameter(
            "name the journals (or run folders) to dismiss", param_hint="--dismiss"
        )
    if journals:
        paths = [p / "journal.jsonl" if p.is_dir() else p for p in journals]
    else:
        paths = [state.path for state in find_stale(reports)]
        if not paths:
            typer.echo(f"no stale journal under {reports}/: nothing to roll back")
            return
    failed = 0
    for path in paths:
        try:
            failed += not (_dismiss(path) if dismiss else _roll_back(path, patience))
        except JournalError as exc:
            typer.echo(f"chaoskit rollback: {exc}", err=True)
            raise typer.Exit(ExitCode.INVALID) from None
    if failed:
        raise typer.Exit(1)


def _roll_back(path: Path, patience: float) -> bool:
    """Roll one journal back and say what was done; False if something is left to a person."""
    import asyncio

    from ..runner.journal import read_journal
    from ..runner.rollback import rollback as replay

    state = read_journal(path)
    if state.owner_alive and (state.pending or state.running):
        typer.echo(
            f"{path}: run {state.run} is still going (pid {state.pid}); it reverts its own "
            "faults — `chaoskit halt` (or Ctrl-C) if it must end now",
            err=True,
        )
        return False
    done = asyncio.run(replay(path, patience=patience))
    if not done.outcomes and not done.stopped:
        typer.echo(f"{path}: run {state.run}: nothing left applied")
    else:
        typer.echo(
            f"{path}: run {state.run}: reverting {len(done.outcomes)} fault(s), "
            f"stopping {len(done.stopped)} part(s)"
        )
    for line in done.lines(kinds=True):
        typer.echo(f"  {line}")
    if done.unrecorded:
        typer.echo(
            f"  not recorded in the journal ({done.unrecorded}): run it again later", err=True
        )
    if state.torn:
        typer.echo("  its last line was cut short by a crash mid-write (it named nothing applied)")
    if state.damaged and not state.dismissed:
        typer.echo(
            f"  DAMAGED: {', '.join(map(str, state.damaged))}: what these lines named may still "
            f"be applied; check the run's targets by hand (its result.json, if any, lists its "
            f"faults), then `chaoskit rollback --dismiss {path.parent}`",
            err=True,
        )
        return False
    return done.ok


def _dismiss(path: Path) -> bool:
    """Record that a person took over what the journal may still name."""
    import getpass

    from ..runner.journal import Journal, read_journal

    state = read_journal(path)
    if state.owner_alive and not state.closed:
        typer.echo(
            f"{path}: run {state.run} is still going (pid {state.pid}): not dismissed", err=True
        )
        return False
    journal = Journal.append_to(path)
    try:
        journal.dismissed(getpass.getuser())
    finally:
        journal.release()
    left = [f"{r.fault} on {r.target.kind} {r.target.name}" for r in state.pending]
    typer.echo(
        f"{path}: dismissed; it no longer blocks new runs"
        + (f" (it still named: {'; '.join(left)})" if left else "")
    )
    return True
