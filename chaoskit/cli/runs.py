"""``chaoskit run``, ``halt`` and ``rollback``: a run's life, and what is left after it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from ._shared import ReportsOption, VarOption, exit_on_bad_input, parse_vars


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
    refused before anything was touched, 3 aborted by the safety valve (after every fault was
    reverted), 4 inconclusive, 5 not steady before any fault (nothing injected), 70 error.
    """
    import asyncio

    from ..loader import load_experiment
    from ..runner.run import PreflightError, run_experiment
    from ..runner.system import BringUpError
    from ..safety.policy import find_policy

    with exit_on_bad_input("run"):
        experiment = load_experiment(path, variables=parse_vars(var or []))
        site, _ = find_policy(policy)
    from ..report.console import RunConsole
    from ..runner.journal import find_stale
    from ..runner.rollback import rollback as replay

    stale = find_stale(reports)
    if stale:
        for state in stale:
            typer.echo(
                f"an earlier run left faults applied or parts running: {state.path} "
                f"({len(state.pending)} fault(s), {len(state.running)} part(s))",
                err=True,
            )
        if not (sys.stdin.isatty() and typer.confirm("Roll them back now?", err=True)):
            typer.echo("chaoskit run: refused; run `chaoskit rollback` first", err=True)
            raise typer.Exit(ExitCode.INVALID)
        for state in stale:
            done = asyncio.run(replay(state.path))
            if not done.ok:
                typer.echo(f"chaoskit run: {state.path} could not be rolled back fully", err=True)
                raise typer.Exit(ExitCode.INTERNAL)
            typer.echo(f"rolled back {state.path}", err=True)

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
                )
            )
    except PreflightError as exc:
        typer.echo(f"chaoskit run: refused, nothing was touched: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    except BringUpError as exc:
        typer.echo(f"chaoskit run: the system did not come up: {exc}", err=True)
        raise typer.Exit(ExitCode.INTERNAL) from None
    result = outcome.result
    verdict = result.get("verdict") or {}
    from ..report.words import recovery_in_words, valve_in_words

    typer.echo(f"{experiment.name}: {outcome.verdict}")
    steady = result.get("steady_state") or {}
    for problem in steady.get("problems") or []:
        typer.echo(f"  not steady before any fault: {problem}")
    if result.get("safety") and outcome.verdict != "not_steady":
        typer.echo(f"  aborted: {result['safety']['detail']} (every fault was reverted first)")
    if result.get("error"):
        typer.echo(f"  error: {result['error']}")
    for metric in verdict.get("metrics", []):
        typer.echo(f"  {metric['metric']}: {metric['verdict']} — {metric['reason']}")
    for line in recovery_in_words(result):
        typer.echo(f"  recovery: {line}")
    if verdict.get("stopped_early"):
        typer.echo(f"  stopped early: {verdict['stopped_early']}")
    for line in valve_in_words(result):
        typer.echo(f"  safety valve: {line}")
    typer.echo(f"  result: {outcome.run_dir / 'result.json'}")
    from ..report import ReportError, write_reports

    try:
        for written in write_reports(outcome.run_dir / "result.json"):
            typer.echo(f"  {written.stem}: {written}")
    except ReportError as exc:  # the verdict stands; only its rendering failed
        typer.echo(f"chaoskit run: no report: {exc}", err=True)
    from ..gameday.history import HistoryError, history_db, record_run

    try:
        record_run(history_db(reports), result, outcome.run_dir / "result.json")
    except HistoryError as exc:  # the verdict stands; only the history missed it
        typer.echo(f"chaoskit run: not recorded in the history: {exc}", err=True)
    raise typer.Exit(outcome.exit_code)


def halt(
    reports: ReportsOption = Path("reports"),
) -> None:
    """Stop every run going on under --reports now (each reverts its faults first)."""
    from ..runner.journal import JournalError, read_journal

    stopped = 0
    for journal in sorted(reports.glob("*/journal.jsonl")):
        try:
            state = read_journal(journal)
        except JournalError:
            continue
        if state.owner_alive and not state.closed:
            (journal.parent / "HALT").touch()
            typer.echo(f"halting run {state.run} (pid {state.pid})")
            stopped += 1
    if not stopped:
        typer.echo(f"no run is going on under {reports}/")


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
) -> None:
    """Revert every fault a run's journal says is still applied, and say what was done.

    Exit 0 when nothing is left applied, 1 when some fault could not be reverted (each is
    named), 2 when a path is not a journal.
    """
    import asyncio

    from ..runner.journal import JournalError, find_stale, read_journal
    from ..runner.rollback import rollback as replay

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
            state = read_journal(path)
            if state.owner_alive and (state.pending or state.running):
                typer.echo(
                    f"{path}: run {state.run} is still going (pid {state.pid}); "
                    "it reverts its own faults — stop it first (Ctrl-C) if it must end now",
                    err=True,
                )
                failed += 1
                continue
            done = asyncio.run(replay(path))
        except JournalError as exc:
            typer.echo(f"chaoskit rollback: {exc}", err=True)
            raise typer.Exit(ExitCode.INVALID) from None
        if not done.outcomes and not done.stopped:
            typer.echo(f"{path}: run {done.state.run}: nothing left applied")
            continue
        typer.echo(
            f"{path}: run {done.state.run}: reverting {len(done.outcomes)} fault(s), "
            f"stopping {len(done.stopped)} part(s)"
        )
        for outcome in done.outcomes:
            record = outcome.record
            result = "reverted" if outcome.ok else f"FAILED: {outcome.error}"
            typer.echo(f"  {record.fault} on {record.target.kind} {record.target.name}: {result}")
        for stopped in done.stopped:
            part = stopped.part
            result = "stopped" if stopped.error is None else f"FAILED: {stopped.error}"
            typer.echo(f"  {part['kind']} {part.get('name') or part.get('id')}: {result}")
        failed += not done.ok
    if failed:
        raise typer.Exit(1)
