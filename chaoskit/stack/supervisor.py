"""The supervisor: runs N replicas as child processes, health-checks them, and restarts the
crashed or unhealthy ones after Chef Habitat's restart backoff. Its history is served as JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from ..launch import sandbox
from ..launch.faketime import process_faketime
from ..units import Size
from .backoff import RestartBackoff
from .contract import ReplicaStatus, Status

__all__ = ["Replica", "RestartEvent", "Supervisor", "main"]


@dataclass(frozen=True)
class RestartEvent:
    """One restart: when the replica failed and why, the wait chosen, when it came back."""

    replica: str
    cause: str
    crashed_at: float
    wait: float
    restarted_at: float
    pid: int


@dataclass
class Replica:
    """A child process the supervisor keeps alive."""

    name: str
    argv: list[str]
    health_url: str
    backoff: RestartBackoff
    process: asyncio.subprocess.Process | None = None
    ready: bool = False
    restarts: int = 0
    state: str = "starting"
    history: list[RestartEvent] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Added to the supervisor's environment (libfaketime's, for clock_skew)."""


class Supervisor:
    """Keeps replicas alive: a crash (exit) or ``unhealthy_after`` failed liveness checks in a
    row gets the replica killed and restarted after its backoff.

    A replica that has not answered its liveness check once since it started gets
    ``start_grace`` seconds before failed checks count (as a Kubernetes startup probe): on a
    loaded machine a Python service takes seconds to start, and killing it for that turned a
    20 s outage into 42 s of restarts. A replica that never comes up is still restarted."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        check_interval: float = 0.5,
        unhealthy_after: int = 3,
        check_timeout: float = 1.0,
        start_grace: float = 30.0,
    ) -> None:
        self.replicas = list(replicas)
        self.check_interval = check_interval
        self.unhealthy_after = unhealthy_after
        self.check_timeout = check_timeout
        self.start_grace = start_grace
        self.started_at = time.time()

    async def run(self) -> None:
        """Supervise until cancelled; children are stopped on the way out."""
        async with httpx.AsyncClient(trust_env=False) as client:
            try:
                async with asyncio.TaskGroup() as group:
                    for replica in self.replicas:
                        group.create_task(self._keep_alive(replica, client))
            finally:
                await asyncio.shield(self.stop_all())

    async def _start(self, replica: Replica) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *replica.argv,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **replica.env} if replica.env else None,
        )
        replica.process = process
        replica.state = "running"
        replica.ready = False
        return process

    async def _keep_alive(self, replica: Replica, client: httpx.AsyncClient) -> None:
        process = await self._start(replica)
        while True:
            cause = await self._watch(replica, process, client)
            crashed_at = time.time()
            replica.state = "backoff"
            replica.ready = False
            wait = replica.backoff.next_wait(time.monotonic())
            await asyncio.sleep(wait)
            process = await self._start(replica)
            replica.restarts += 1
            replica.history.append(
                RestartEvent(replica.name, cause, crashed_at, wait, time.time(), process.pid)
            )

    async def _watch(
        self, replica: Replica, process: asyncio.subprocess.Process, client: httpx.AsyncClient
    ) -> str:
        """Wait until the replica's ``process`` exits or fails its liveness check; say why."""
        failures = 0
        started, answered = time.monotonic(), False
        exited = asyncio.ensure_future(process.wait())
        try:
            while True:
                check = asyncio.ensure_future(self._check(replica, client))
                await asyncio.wait({exited, check}, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    check.cancel()
                    return f"exited with {_exit_text(process.returncode)}"
                live = check.result()
                answered = answered or live
                starting = not answered and time.monotonic() - started < self.start_grace
                failures = 0 if live or starting else failures + 1
                if failures >= self.unhealthy_after:
                    await _kill(process)
                    return f"unhealthy: {failures} failed liveness checks"
                await asyncio.wait({exited}, timeout=self.check_interval)
                if exited.done():
                    return f"exited with {_exit_text(process.returncode)}"
        finally:
            exited.cancel()

    async def _check(self, replica: Replica, client: httpx.AsyncClient) -> bool:
        """Liveness (returned) and readiness (recorded) of one replica."""
        live = await self._probe(client, replica.health_url + "/health/live")
        replica.ready = live and await self._probe(client, replica.health_url + "/health/ready")
        return live

    async def _probe(self, client: httpx.AsyncClient, url: str) -> bool:
        try:
            answer = await client.get(url, timeout=self.check_timeout)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    async def stop_all(self) -> None:
        """Terminate every child, then kill what has not exited within 5 s."""
        for replica in self.replicas:
            replica.state = "stopped"
            if replica.process is not None and replica.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    replica.process.send_signal(signal.SIGCONT)  # a paused child cannot exit
                    replica.process.terminate()
        for replica in self.replicas:
            if replica.process is not None:
                await _kill(replica.process, grace=5.0)

    def status(self) -> Status:
        """The replicas now: pid, state, readiness and restart counts (``contract.Status``)."""
        replicas = [
            ReplicaStatus(
                name=r.name,
                pid=r.process.pid if r.process else None,
                state=r.state,
                ready=r.ready,
                restarts=r.restarts,
            )
            for r in self.replicas
        ]
        return Status(replicas=replicas, ready=sum(r.ready for r in self.replicas))

    def history(self) -> list[dict[str, Any]]:
        """Every restart so far, oldest first."""
        events = [event for r in self.replicas for event in r.history]
        return [asdict(e) for e in sorted(events, key=lambda e: e.restarted_at)]


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


async def _kill(process: asyncio.subprocess.Process, grace: float = 0.0) -> None:
    if grace:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


SUPERVISOR = web.AppKey("supervisor", Supervisor)


def create_app(supervisor: Supervisor) -> web.Application:
    """The supervisor's JSON API: /status, /history, /health/live."""
    app = web.Application()
    app[SUPERVISOR] = supervisor

    async def status(request: web.Request) -> web.Response:
        return web.json_response(request.app[SUPERVISOR].status())

    async def history(request: web.Request) -> web.Response:
        return web.json_response(request.app[SUPERVISOR].history())

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "live"})

    app.router.add_get("/status", status)
    app.router.add_get("/history", history)
    app.router.add_get("/health/live", live)
    return app


async def serve(supervisor: Supervisor, host: str, port: int) -> None:
    """Run the supervisor and its API until SIGINT or SIGTERM."""
    runner = web.AppRunner(create_app(supervisor), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    task = asyncio.create_task(supervisor.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await runner.cleanup()


def backend_replicas(
    ports: Sequence[int],
    data_root: Path,
    backoff: tuple[float, float, float],
    seed: int | None,
    *,
    tmpfs: int | None = None,
    faketime: Path | None = None,
) -> list[Replica]:
    """Replicas ``backend-1`` … ``backend-N`` of the demo's backend service; with ``tmpfs``
    (bytes) each runs in a sandbox with a tmpfs of that size as its data folder; with
    ``faketime`` (a folder) each runs under libfaketime reading ``faketime/<name>``."""
    rng = random.Random(seed)
    replicas = []
    for i, port in enumerate(ports, start=1):
        name = f"backend-{i}"
        data = str(data_root / name)
        argv = [
            sys.executable, "-m", "chaoskit.stack.backend",
            "--name", name, "--port", str(port), "--data-dir", data,
        ]  # fmt: skip
        if tmpfs is not None:
            argv = sandbox.command(argv, data, Size(tmpfs))
        low, high, cooldown = backoff
        replicas.append(
            Replica(
                name,
                argv,
                f"http://127.0.0.1:{port}",
                RestartBackoff(low, high, cooldown, rng=random.Random(rng.random())),
                env=process_faketime(faketime / name) if faketime is not None else {},
            )
        )
    return replicas


def main(argv: list[str] | None = None) -> None:
    """``python -m chaoskit.stack.supervisor --port P --backend-port A --backend-port B …``."""
    parser = argparse.ArgumentParser(prog="chaoskit.stack.supervisor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, action="append", required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--min-backoff", type=float, default=0.5)
    parser.add_argument("--max-backoff", type=float, default=8.0)
    parser.add_argument("--cooldown", type=float, default=30.0)
    parser.add_argument("--check-interval", type=float, default=0.5)
    parser.add_argument("--unhealthy-after", type=int, default=3)
    parser.add_argument(
        "--start-grace",
        type=float,
        default=30.0,
        help="seconds a starting backend may fail its liveness check before it counts",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--tmpfs", type=int, default=None, help="bytes of tmpfs per backend")
    parser.add_argument(
        "--faketime",
        type=Path,
        default=None,
        help="folder of libfaketime skew files, one a backend",
    )
    args = parser.parse_args(argv)
    replicas = backend_replicas(
        args.backend_port,
        args.data_root,
        (args.min_backoff, args.max_backoff, args.cooldown),
        args.seed,
        tmpfs=args.tmpfs,
        faketime=args.faketime,
    )
    supervisor = Supervisor(
        replicas, args.check_interval, args.unhealthy_after, start_grace=args.start_grace
    )
    asyncio.run(serve(supervisor, args.host, args.port))


if __name__ == "__main__":
    main()
