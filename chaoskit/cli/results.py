"""``chaoskit report``, ``history`` and ``gate``: what runs left behind, read again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode
from ._shared import result_or_exit


def history(
    reports: Annotated[Path, typer.Option(help="The reports folder holding history.db.")] = Path(
        "reports"
    ),
    experiment: Annotated[
        str | None, typer.Option(help="Only this experiment's runs (by name).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many of the newest runs.")] = 20,
) -> None:
    """List recorded runs, newest last, and each experiment's time-to-recovery trend."""
    import time as clock

    from ..gameday.history import HistoryError, history_db, runs

    try:
        found = runs(history_db(reports), experiment, limit)
    except HistoryError as exc:
        typer.echo(f"chaoskit history: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    if not found:
        where = f" of {experiment}" if experiment else ""
        typer.echo(f"no runs{where} recorded in {history_db(reports)} yet")
        return
    for entry in found:
        when = clock.strftime("%Y-%m-%d %H:%M", clock.localtime(entry.started))
        verdicts = ", ".join(f"{m} {v}" for m, v in entry.verdicts.items()) or "-"
        typer.echo(f"{when}  {entry.run}  {entry.outcome.upper():<12} {verdicts}")
    typer.echo("")
    for name in sorted({e.experiment for e in found}):
        mine = [e for e in found if e.experiment == name]
        metrics = sorted({m for e in mine for m in e.recovery})
        for metric in metrics:
            trend = " → ".join(
                "-" if metric not in e.recovery
                else "not recovered" if e.recovery[metric] is None
                else f"{e.recovery[metric]:.1f}s"
                for e in mine
            )  # fmt: skip
            typer.echo(f"{name}: time to recovery of {metric}: {trend}")


def gate(
    result: Annotated[Path, typer.Argument(help="The run's result.json (or its folder).")],
    reports: Annotated[Path, typer.Option(help="The reports folder holding history.db.")] = Path(
        "reports"
    ),
    ratio: Annotated[
        float,
        typer.Option(min=1.0, help="Fail when median time to recovery exceeds this many times "
                     "the last good run's."),
    ] = 1.5,
) -> None:  # fmt: skip
    """Fail (exit 1) when a run is worse than its experiment's last good run.

    Worse means a worse verdict, or a median time to recovery beyond --ratio times the last
    good run's. The run is recorded in the history either way; exit 0 when it passes.
    """
    from ..gameday.gate import compare_runs
    from ..gameday.history import HistoryError, history_db, last_good, record_run

    loaded = result_or_exit(result, "gate")
    path = result / "result.json" if result.is_dir() else result
    try:
        entry = record_run(history_db(reports), loaded, path)
        good = last_good(history_db(reports), entry.experiment, entry)
    except HistoryError as exc:
        typer.echo(f"chaoskit gate: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    decision = compare_runs(entry, good, ratio)
    against = f" against run {good.run}" if good else ""
    typer.echo(f"gate {'passed' if decision.passed else 'FAILED'}: {entry.run}{against}")
    for reason in decision.reasons:
        typer.echo(f"  - {reason}")
    for note in decision.notes:
        typer.echo(f"  {note}")
    raise typer.Exit(0 if decision.passed else 1)


def report(
    result: Annotated[
        Path, typer.Argument(help="A run's result.json (or the run's folder holding it).")
    ],
    record: Annotated[
        Path | None,
        typer.Option(
            help="Also record the run in this reports folder's history.db, as chaoskit run "
            "does (the watchdog uses this for a run it had to kill)."
        ),
    ] = None,
) -> None:
    """Render report.html, junit.xml and summary.md again from a run's result.json, beside it."""
    from ..report import ReportError, write_reports

    try:
        reports = write_reports(result)
    except ReportError as exc:
        typer.echo(f"chaoskit report: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    for out in reports.written:
        typer.echo(str(out))
    for problem in reports.problems:
        typer.echo(f"chaoskit report: {problem}", err=True)
    if record is not None:
        from ..gameday.history import HistoryError, history_db, record_run

        path = result / "result.json" if result.is_dir() else result
        try:
            record_run(history_db(record), result_or_exit(result, "report"), path)
        except HistoryError as exc:
            typer.echo(f"chaoskit report: not recorded in the history: {exc}", err=True)
            raise typer.Exit(ExitCode.FAILED) from None
        typer.echo(str(history_db(record)))
    if reports.problems:
        raise typer.Exit(ExitCode.FAILED)
