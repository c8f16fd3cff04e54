"""What every part of the system under test shares: the list of what is up (ports, targets),
how a part is remembered so that it is stopped on every path (and by a fresh process, from the
journal), waiting until a part is ready, and the refusal of a part that cannot even start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ...drivers.base import DriverError, Target
from ...drivers.engines import ENVIRONMENT, Engine, engine_of
from ...drivers.process import start_ticks
from ...model.system import ReadyCheck
from ...model.variables import render
from ..errors import BringUpError, PreflightError

__all__ = [
    "GRACE",
    "RUN_LABEL",
    "Parts",
    "RunningSystem",
    "cannot_start",
    "free_ports",
    "ready",
    "stop_part",
    "tail",
]

RUN_LABEL = "chaoskit.run"
"""The label each container the run starts carries, and its target too: the run's id."""

GRACE = 5.0
"""Seconds a stopped process has between SIGTERM and SIGKILL."""


def cannot_start(part: str, problem: str, field: str) -> Exception:
    """The refusal for a part that cannot even be started: a ``PreflightError`` (exit 2)."""
    return PreflightError(f"cannot start {part}: {problem}; check {field}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (bound and released together)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class RunningSystem:
    """What is up: ports by name, and a way to list the targets as they are now."""

    ports: dict[str, int] = field(default_factory=dict)
    toxiproxy_url: str | None = None
    """The Toxiproxy API the stack's proxies live on (process-mode stack)."""
    front_url: str | None = None
    """The API of the proxy server chaoskit started for proxies in front of targets, if any."""
    engines: list[Engine] = field(default_factory=list)
    """The Docker engines the experiment names (none: the environment's, unnamed)."""
    run_id: str | None = None
    """The run's id, which labels the containers it starts (``chaoskit.run``)."""
    _sources: list[Callable[[], list[Target]]] = field(default_factory=list)

    def targets(self) -> list[Target]:
        """Every target, resolved now (a restarted process has a new pid); where two sources
        know the same one, the first wins (the run's own parts come before the engine's)."""
        found: dict[tuple[str, str], Target] = {}
        for source in self._sources:
            for target in source():
                found.setdefault((target.kind, target.name), target)
        return list(found.values())

    def engine(self, name: str | None) -> Engine:
        """The named engine called ``name`` (None: the first named, else the environment's)."""
        if name is None:
            return self.engines[0] if self.engines else ENVIRONMENT
        return next(e for e in self.engines if e.name == name)

    def add_source(self, source: Callable[[], list[Target]]) -> None:
        """Also offer the targets ``source`` lists (called afresh each time)."""
        self._sources.append(source)


class Parts:
    """The parts started so far, in order, each with how to stop it; and what is up."""

    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        on_start: Callable[[dict[str, Any]], None] | None = None,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.on_start = on_start
        self.on_stop = on_stop
        self.run = {"id": run_id, "dir": str(run_dir)}
        self.run_id = run_id
        self.run_dir = run_dir
        self.up = RunningSystem(run_id=run_id)
        self.stops: list[Callable[[], None]] = []

    def track(self, part: dict[str, Any], stop: Callable[[], None]) -> None:
        """Remember how to stop ``part``, and tell the journal (via ``on_start``) it runs."""
        if self.on_start is not None:
            self.on_start(part)

        def stop_and_record() -> None:
            stop()
            if self.on_stop is not None:
                self.on_stop(part["key"])

        self.stops.append(stop_and_record)

    def render(self, text: str) -> str:
        """``text`` with the run's placeholders (``${ports.NAME}``, ``${run.id}``) filled in."""
        return render(text, self.up.ports, self.run)

    def log(self, name: str) -> Path:
        """The log file of part ``name``, in the run's folder."""
        path = self.run_dir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def tear_down(self) -> list[str]:
        """Stop everything started, newest first; return what could not be stopped."""
        problems = []
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception as error:  # keep stopping the rest; report each
                problems.append(str(error))
        return problems


def tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` of a part's log."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


async def ready(
    check: ReadyCheck, render_: Callable[[str], str], alive: Callable[[], str | None], what: str
) -> None:
    """Wait until ``check`` passes; fail early if the thing died (``alive`` says why)."""
    deadline = time.monotonic() + check.timeout.seconds
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while True:
            problem = alive()
            if problem is not None:
                raise BringUpError(f"{what} {problem}")
            if check.http is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(render_(check.http))).is_success:
                        return
            elif check.tcp is not None:
                host, _, port = render_(check.tcp).rpartition(":")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection(host, int(port))
                    writer.close()
                    return
            if time.monotonic() > deadline:
                target = check.http or check.tcp
                raise BringUpError(f"{what} was not ready within {check.timeout} ({target})")
            await asyncio.sleep(0.1)


def stop_part(part: dict[str, Any]) -> str | None:
    """Stop a part a crashed run left running (from its journal entry); None, or why not."""
    kind = part["kind"]
    if kind == "process":
        pid = int(part["pid"])
        if start_ticks(pid) != part.get("start"):
            return None  # gone already (or the pid now belongs to someone else)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        while start_ticks(pid) == part.get("start") and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if start_ticks(pid) == part.get("start"):
                os.killpg(pid, signal.SIGKILL)
        return None
    import docker.errors  # noqa: PLC0415 - only for containers, services and networks

    try:
        client = engine_of(part).client()
    except DriverError as error:
        return f"cannot remove {kind} {part.get('name') or part['id']}: {error}"
    try:
        if kind == "container":
            client.containers.get(part["id"]).remove(force=True)
        elif kind == "service":
            client.services.get(part["id"]).remove()
        else:
            client.networks.get(part["id"]).remove()
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as error:
        said = str(error.explanation or error)
        if kind == "container" and "already in progress" in said:
            return _removed_by_other(client, part["id"], said)  # the dying runner's own removal
        return said
    finally:
        client.close()
    return None


def _removed_by_other(client: Any, container: str, said: str) -> str | None:
    """Wait (up to :data:`GRACE`) for a removal someone else started to finish: None once the
    container is gone, else what the engine said."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        try:
            client.containers.get(container)
        except docker.errors.NotFound:
            return None
        except (docker.errors.DockerException, requests.RequestException) as error:
            return f"{said}; then: {error}"
        time.sleep(0.1)
    return said
