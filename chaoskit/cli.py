"""The ``chaoskit`` command: parses arguments, calls the library, sets the exit code.

Heavy modules are imported inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from . import __version__
from .cli_gameday import gameday_app
from .exitcodes import ExitCode

app = typer.Typer(
    name="chaoskit",
    help="Break self-healing systems on purpose, safely, and judge how they heal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Exit codes: 0 held/valid, 1 deviated, 2 invalid input or usage (nothing touched), "
        "3 aborted by the safety valve (after rollback), 4 inconclusive, 70 internal error."
    ),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chaoskit {__version__}")
        raise typer.Exit(ExitCode.HELD)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Break self-healing systems on purpose, safely, and judge how they heal."""


def _parse_vars(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=VALUE", param_hint="--var")
        values[name.strip()] = value
    return values


@app.command()
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Experiment files, or folders searched for .yaml/.yml/.json/.toml."),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Site policy file (default: $CHAOSKIT_POLICY, else ./safety/default.yaml, "
            "else built-in defaults).",
        ),
    ] = None,
    no_policy: Annotated[
        bool, typer.Option("--no-policy", help="Check the files only, not the site policy.")
    ] = False,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Set a declared variable: NAME=VALUE (repeatable)."),
    ] = None,
    output: Annotated[
        str, typer.Option("--format", help="text (for people) or json (for tools).")
    ] = "text",
) -> None:
    """Check experiment files and the site policy; print every problem. Touches nothing."""
    from .validate import validate_paths

    if output not in ("text", "json"):
        raise typer.BadParameter(f"'{output}' is not text or json", param_hint="--format")
    fmt: Literal["text", "json"] = "json" if output == "json" else "text"
    code = validate_paths(
        paths,
        policy_path=policy,
        use_policy=not no_policy,
        variables=_parse_vars(var or []),
        output=fmt,
    )
    raise typer.Exit(code)


@app.command()
def schema(
    of: Annotated[
        str, typer.Argument(help="experiment (default) or policy.", show_default=False)
    ] = "experiment",
) -> None:
    """Print the JSON Schema of experiment (or policy) files, for editor completion."""
    from pydantic import BaseModel

    from .model.schema import json_schema

    model: type[BaseModel]
    if of == "experiment":
        from .model import Experiment

        model = Experiment
    elif of == "policy":
        from .safety.policy import Policy

        model = Policy
    else:
        raise typer.BadParameter(f"'{of}' is not experiment or policy", param_hint="OF")
    document = json_schema(model)
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


stack_app = typer.Typer(
    help="The reference self-healing stack: a system to point chaoskit at on day one.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(gameday_app, name="gameday")


@stack_app.command("up")
def stack_up(
    replicas: Annotated[int, typer.Option(help="Backend replicas (1-16).")] = 3,
    base_port: Annotated[
        int, typer.Option(help="First of consecutive ports to use; 0 picks free ones.")
    ] = 0,
    proxies: Annotated[
        bool | None,
        typer.Option(
            "--proxies/--no-proxies",
            help="Put Toxiproxy proxies between frontend and backends "
            "(default: when the embedded proxy is installed).",
            show_default=False,
        ),
    ] = None,
    ports_file: Annotated[
        Path | None, typer.Option(help="Write the ports as JSON here once everything answers.")
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Where backends keep their data (default: a temp folder).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the supervisor's backoff jitter.")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="process, or container (Docker; the image is built locally).")
    ] = "process",
    tmpfs: Annotated[
        str | None,
        typer.Option(
            help="Give each backend a tmpfs of this size for its data, e.g. 64MiB "
            "(process mode: needs root)."
        ),
    ] = None,
    faketime: Annotated[
        Path | None,
        typer.Option(
            help="Run each backend under libfaketime, reading its clock skew from "
            "FOLDER/backend-N (for clock_skew)."
        ),
    ] = None,
) -> None:
    """Run frontend, proxies, backends and supervisor on loopback until Ctrl-C."""
    import signal

    from .stack.launcher import describe, embedded_proxy_available, plan, run_stack, write_ports

    if mode not in ("process", "container"):
        raise typer.BadParameter(f"'{mode}' is not process or container", param_hint="--mode")
    use_proxies = embedded_proxy_available() if proxies is None else proxies
    if use_proxies and not embedded_proxy_available():
        raise typer.BadParameter("the embedded proxy is not installed", param_hint="--proxies")
    try:
        stack = plan(
            replicas,
            base_port,
            use_proxies,
            data_root,
            seed,
            "container" if mode == "container" else "process",
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if tmpfs is not None:
        from .units import Size, UnitError

        try:
            stack.tmpfs = Size.parse(tmpfs).bytes
        except UnitError as exc:
            raise typer.BadParameter(str(exc), param_hint="--tmpfs") from None
    if faketime is not None:
        from .drivers.base import DriverError
        from .drivers.clock import find_libfaketime

        try:
            find_libfaketime()
        except DriverError as exc:
            raise typer.BadParameter(str(exc), param_hint="--faketime") from None
        stack.faketime = faketime.resolve()

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        with run_stack(stack):
            typer.echo(describe(stack))
            if ports_file is not None:
                write_ports(stack, ports_file)
            typer.echo("stack is up; Ctrl-C stops it", err=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as exc:
        typer.echo(f"the stack did not come up: {exc}", err=True)
        raise typer.Exit(ExitCode.INTERNAL) from None
    typer.echo("stack stopped", err=True)


@app.command()
def run(
    path: Annotated[Path, typer.Argument(help="The experiment file.")],
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Site policy file (default: as for validate)."),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Set a declared variable: NAME=VALUE (repeatable)."),
    ] = None,
    reports: Annotated[Path, typer.Option(help="Where the run's folder is written.")] = Path(
        "reports"
    ),
) -> None:
    """Run an experiment: bring the system up, inject, observe, revert, judge, tear down.

    Exit 0 held, 1 deviated, 2 refused before anything was touched, 3 aborted by the safety
    valve (after every fault was reverted), 4 inconclusive, 70 error.
    """
    import asyncio

    from .loader import LoadError, load_experiment
    from .runner.run import PreflightError, run_experiment
    from .runner.system import BringUpError
    from .safety.policy import find_policy

    try:
        experiment = load_experiment(path, variables=_parse_vars(var or []))
        site, _ = find_policy(policy)
    except LoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    except OSError as exc:
        typer.echo(f"chaoskit run: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    from .report.console import RunConsole
    from .runner.journal import find_stale
    from .runner.rollback import rollback as replay

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
    typer.echo(f"{experiment.name}: {outcome.verdict}")
    if result.get("safety"):
        typer.echo(f"  aborted: {result['safety']['detail']} (every fault was reverted first)")
    if result.get("error"):
        typer.echo(f"  error: {result['error']}")
    for metric in verdict.get("metrics", []):
        typer.echo(f"  {metric['metric']}: {metric['verdict']} — {metric['reason']}")
    for name, ttr in (verdict.get("recovery") or {}).items():
        if "median" in ttr:
            shown = "not recovered" if ttr["median"] is None else f"{ttr['median']:.1f}s"
            typer.echo(f"  time to recovery ({name}): {shown}")
    typer.echo(f"  result: {outcome.run_dir / 'result.json'}")
    from .report import ReportError, write_reports

    try:
        for written in write_reports(outcome.run_dir / "result.json"):
            typer.echo(f"  {written.stem}: {written}")
    except ReportError as exc:  # the verdict stands; only its rendering failed
        typer.echo(f"chaoskit run: no report: {exc}", err=True)
    from .gameday.history import HistoryError, record_run

    try:
        record_run(reports / HISTORY, result, outcome.run_dir / "result.json")
    except HistoryError as exc:  # the verdict stands; only the history missed it
        typer.echo(f"chaoskit run: not recorded in the history: {exc}", err=True)
    raise typer.Exit(outcome.exit_code)


HISTORY = "history.db"
"""The run history's file name under the reports folder."""


def _load_result(path: Path, command: str) -> dict[str, Any]:
    """A run's result.json (or its folder's), or exit 2 saying what is wrong with it."""
    from .report import ReportError, load_result

    try:
        return load_result(path)
    except ReportError as exc:
        typer.echo(f"chaoskit {command}: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None


@app.command()
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

    from .gameday.history import HistoryError, runs

    try:
        found = runs(reports / HISTORY, experiment, limit)
    except HistoryError as exc:
        typer.echo(f"chaoskit history: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    if not found:
        where = f" of {experiment}" if experiment else ""
        typer.echo(f"no runs{where} recorded in {reports / HISTORY} yet")
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


@app.command()
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
    """Fail (exit 1) when a run is worse than the last good run of its experiment in the
    history: a worse verdict, or a median time to recovery beyond --ratio times; else exit 0."""
    from .gameday.gate import compare_runs
    from .gameday.history import HistoryError, last_good, record_run

    loaded = _load_result(result, "gate")
    path = result / "result.json" if result.is_dir() else result
    try:
        entry = record_run(reports / HISTORY, loaded, path)
        good = last_good(reports / HISTORY, entry.experiment, entry)
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


@app.command()
def report(
    result: Annotated[
        Path, typer.Argument(help="A run's result.json (or the run's folder holding it).")
    ],
) -> None:
    """Render report.html, junit.xml and summary.md again from a run's result.json, beside it."""
    from .report import ReportError, write_reports

    try:
        written = write_reports(result)
    except ReportError as exc:
        typer.echo(f"chaoskit report: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    for out in written:
        typer.echo(str(out))


@app.command()
def halt(
    reports: Annotated[Path, typer.Option(help="Where runs write their folders.")] = Path(
        "reports"
    ),
) -> None:
    """Stop every run going on under --reports now (each reverts its faults first)."""
    from .runner.journal import JournalError, read_journal

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


@app.command()
def rollback(
    journals: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Journals (or run folders holding journal.jsonl). "
            "None: every stale journal under --reports.",
            show_default=False,
        ),
    ] = None,
    reports: Annotated[Path, typer.Option(help="Where runs write their folders.")] = Path(
        "reports"
    ),
) -> None:
    """Revert every fault a run's journal says is still applied, and say what was done.

    Exit 0 when nothing is left applied, 1 when some fault could not be reverted (each is
    named), 2 when a path is not a journal.
    """
    import asyncio

    from .runner.journal import JournalError, find_stale, read_journal
    from .runner.rollback import rollback as replay

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


@app.command()
def proxy(
    host: Annotated[
        str,
        typer.Option(help="API address; anything but loopback must be asked for explicitly."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port; 0 picks a free one.")] = 8474,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON list of proxies to create at start, as POST /populate takes."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for toxicity rolls, jitter and slicer cuts.")
    ] = None,
    proxy_metrics: Annotated[
        bool, typer.Option("--proxy-metrics", help="Serve byte counters at /metrics.")
    ] = False,
    runtime_metrics: Annotated[
        bool, typer.Option("--runtime-metrics", help="Serve process metrics at /metrics.")
    ] = False,
) -> None:
    """Run the embedded Toxiproxy-compatible fault proxy until Ctrl-C or SIGTERM."""
    import asyncio
    import logging
    import os

    from .proxy import VERSION, ProxyServer, is_loopback

    if config is not None and not config.is_file():
        raise typer.BadParameter(f"{config} is not a file", param_hint="--config")
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a port (0-65535)", param_hint="--port")
    level = os.environ.get("LOG_LEVEL", "info").upper().replace("WARN", "WARNING")
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not is_loopback(host):
        logging.getLogger("chaoskit.proxy").warning(
            "the API listens on %s: anyone who can reach it can inject faults", host
        )
    server = ProxyServer(
        host,
        port,
        seed=seed,
        config=config,
        proxy_metrics=proxy_metrics,
        runtime_metrics=runtime_metrics,
    )

    def ready(started: ProxyServer) -> None:
        typer.echo(f"chaoskit proxy (Toxiproxy {VERSION} API) listening on {started.url}")

    try:
        asyncio.run(server.serve(ready))
    except OSError as exc:
        typer.echo(
            f"chaoskit proxy: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True
        )
        raise typer.Exit(ExitCode.INVALID) from None


def main() -> None:
    """Entry point of the console script: exit 70 with a short report on a bug."""
    try:
        app(prog_name="chaoskit")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:  # a bug: say so plainly, keep the traceback for the report
        traceback.print_exc()
        print(
            f"chaoskit {__version__}: internal error (a bug in chaoskit, not in your input). "
            "Please report it with the traceback above.",
            file=sys.stderr,
        )
        sys.exit(ExitCode.INTERNAL)
