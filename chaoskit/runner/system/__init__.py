"""Bringing the system under test up before a run and down after it: the reference stack (as a
``chaoskit stack up`` process, never imported), local processes, containers and Swarm
services — each with the targets faults may hit, and everything torn down on every exit path.

One module a kind of part (``stack``, ``proxies``, ``processes``, ``containers``,
``services``); every local
program starts through ``spawn``, and ``parts`` holds what they share.

A part that cannot even be started — a process whose program or working directory is not there
or not executable, a container whose image is not on the engine or whose command the engine
refuses — is a mistake in the experiment (or the machine it runs on), not a system that failed
to come up: the run is refused (``PreflightError``, exit 2) naming the part, what is wrong and
the field to check, after the parts already started are stopped. A part that starts and then
dies or never gets ready is a :class:`BringUpError` (exit 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from ...model import System
from ..errors import BringUpError
from .containers import start_containers, use_engines
from .parts import Parts, RunningSystem, free_ports, stop_part
from .processes import start_process
from .proxies import start_front_proxy, use_toxiproxy, use_toxiproxy_servers
from .services import start_services
from .stack import start_stack

__all__ = ["BringUpError", "RunningSystem", "bring_up", "free_ports", "stop_part"]


@contextlib.asynccontextmanager
async def bring_up(
    system: System,
    run_id: str,
    run_dir: Path,
    *,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_stop: Callable[[str], None] | None = None,
    front_proxy: bool = False,
) -> AsyncIterator[RunningSystem]:
    """Start the stack, then free ports, processes and containers; stop them all on exit.

    ``on_start``/``on_stop`` hear of each part started and stopped (the runner journals them).
    With ``front_proxy``, a ``chaoskit proxy`` for proxies in front of targets starts first.
    """
    parts = Parts(run_id, run_dir, on_start, on_stop)
    try:
        if front_proxy:
            await start_front_proxy(parts)
        if system.stack is not None:
            await start_stack(parts, system.stack)
        own = [name for name in system.ports if name not in parts.up.ports]
        parts.up.ports.update(zip(own, free_ports(len(own)), strict=True))
        url = system.toxiproxy or (None if system.stack else os.environ.get("TOXIPROXY_URL"))
        if url:
            use_toxiproxy(parts, parts.render(url))
        use_toxiproxy_servers(parts, system.toxiproxies)
        use_engines(parts, system.engines)
        if system.containers:
            await start_containers(parts, system.containers)
        if system.services:
            await start_services(parts, system.services)
        for index, spec in enumerate(system.processes):
            await start_process(parts, spec, index)
        yield parts.up
    finally:
        await asyncio.get_running_loop().run_in_executor(None, parts.tear_down)
