"""``chaoskit stack up``: the reference self-healing stack, until Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode

stack_app = typer.Typer(
    help="The reference self-healing stack: a system to point chaoskit at on day one.",
    no_args_is_help=True,
)


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
    ready_timeout: Annotated[
        str,
        typer.Option(
            help="How long every part gets to answer before the stack gives up, e.g. 3m "
            "(a loaded machine starts Python slowly)."
        ),
    ] = "120s",
) -> None:
    """Run frontend, proxies, backends and supervisor on loopback until Ctrl-C."""
    import signal

    from ..stack.launcher import describe, embedded_proxy_available, plan, run_stack, write_ports

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
        from ..units import Size, UnitError

        try:
            stack.tmpfs = Size.parse(tmpfs).bytes
        except UnitError as exc:
            raise typer.BadParameter(str(exc), param_hint="--tmpfs") from None
    if faketime is not None:
        from ..launch import LaunchError
        from ..launch.faketime import find_libfaketime

        try:
            find_libfaketime()
        except LaunchError as exc:
            raise typer.BadParameter(str(exc), param_hint="--faketime") from None
        stack.faketime = faketime.resolve()

    from ..units import Duration, UnitError

    try:
        wait = Duration.parse(ready_timeout).seconds
    except UnitError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ready-timeout") from None
    if wait <= 0:
        raise typer.BadParameter("must be longer than 0s", param_hint="--ready-timeout")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        with run_stack(stack, wait):
            typer.echo(describe(stack))
            if ports_file is not None:
                write_ports(stack, ports_file)
            typer.echo("stack is up; Ctrl-C stops it", err=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    except TimeoutError as exc:
        typer.echo(
            f"the stack did not come up within {ready_timeout}: {exc}\n"
            "On a loaded machine, give it longer with --ready-timeout "
            "(in an experiment: system.stack.ready_timeout).",
            err=True,
        )
        raise typer.Exit(ExitCode.FAILED) from None
    except RuntimeError as exc:
        typer.echo(f"the stack did not come up: {exc}", err=True)
        raise typer.Exit(ExitCode.FAILED) from None
    typer.echo("stack stopped", err=True)
