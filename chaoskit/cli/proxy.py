"""``chaoskit proxy``: the embedded Toxiproxy-compatible fault proxy, standalone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..exitcodes import ExitCode


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

    from ..proxy import VERSION, ProxyServer, is_loopback

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
