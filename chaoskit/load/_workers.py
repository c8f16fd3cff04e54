"""The load generator's sending processes, from the parent's side: started, told when to begin
and when to stop, heard from, and never left behind (the worker's side is ``_worker.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any

from ..model.experiment import Load
from ._errors import LoadWorkerError
from ._worker import Outcome

__all__ = ["Workers"]

READY_WITHIN = 60.0
"""Seconds a worker may take to start (a Python process importing chaoskit on a busy machine)."""

_KEPT_STDERR = 2000
"""Bytes of a worker's stderr kept to explain how it failed."""


class _Child:
    """One worker process and what the parent knows of it."""

    def __init__(self, k: int, process: asyncio.subprocess.Process) -> None:
        self.k = k
        self.process = process
        self.in_flight = 0
        self.done = False
        self.next: int | None = None
        """The first of its requests it has not sent, once it said so (stopped or done)."""
        self.stderr = bytearray()
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.answered: asyncio.Future[None] = loop.create_future()
        """Done once it said which request is next, or ended."""
        self.ended: asyncio.Future[LoadWorkerError | None] = loop.create_future()
        self.tasks: list[asyncio.Task[None]] = []
        """Its listener, then its stderr reader."""

    def tell(self, message: dict[str, Any]) -> None:
        """Write one command line; a worker that is gone is found out by its listener."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(json.dumps(message).encode() + b"\n")

    def said(self) -> str:
        text = self.stderr.decode(errors="replace").strip()
        return f"; its last words: {text[-_KEPT_STDERR:]}" if text else ""


class Workers:
    """``load.workers`` processes sending ``rate`` requests per second between them (``total``
    in all, or until :meth:`stop`); ``on_outcomes`` hears each batch, ``on_failure`` the
    first worker that fails or dies."""

    def __init__(
        self,
        load: Load,
        *,
        total: int | None,
        on_outcomes: Callable[[list[Outcome]], None],
        on_failure: Callable[[LoadWorkerError], None],
    ) -> None:
        self.load = load
        self.total = total
        self.on_outcomes = on_outcomes
        self.on_failure = on_failure
        self.children: list[_Child] = []
        self.closing = False

    @property
    def in_flight(self) -> int:
        """Requests the workers had sent and not finished, as of their last batches."""
        return sum(child.in_flight for child in self.children)

    def _settings(self, k: int) -> dict[str, Any]:
        load, n = self.load, self.load.workers
        return {
            "k": k,
            "n": n,
            "rate": load.rate.per_second,
            "total": self.total,
            "cap": load.max_in_flight // n + (1 if k < load.max_in_flight % n else 0),
            "url": load.url,
            "method": load.method,
            "headers": load.headers,
            "body": load.body,
            "timeout": load.timeout.seconds,
            "group_header": load.group_header,
        }

    async def open(self, given_up: asyncio.Future[None]) -> None:
        """Start the workers and wait until each is ready (or ``given_up`` is done)."""
        for k in range(self.load.workers):
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "chaoskit.load._worker", str(os.getpid()),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as exc:
                raise LoadWorkerError(f"load worker {k} could not start: {exc}") from exc
            child = _Child(k, process)
            self.children.append(child)
            child.tasks = [
                asyncio.create_task(self._listen(child)),
                asyncio.create_task(self._keep_stderr(child)),
            ]
            child.tell(self._settings(k))
        deadline = asyncio.get_running_loop().time() + READY_WITHIN
        while not given_up.done() and not all(c.ready.done() for c in self.children):
            for child in self.children:
                if child.ended.done():  # before it was ready: it can only have failed
                    raise child.ended.result() or LoadWorkerError(
                        f"load worker {child.k} ended before it was ready"
                    )
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                late = next(c for c in self.children if not c.ready.done())
                raise LoadWorkerError(
                    f"load worker {late.k} was not ready within {READY_WITHIN:g}s{late.said()}"
                )
            waits: list[asyncio.Future[Any]] = [given_up, *(c.ended for c in self.children)]
            waits += [c.ready for c in self.children if not c.ready.done()]
            await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)

    def go(self, start: float) -> None:
        """Request 0 is due at the monotonic instant ``start``."""
        for child in self.children:
            child.tell({"start": start})

    def stop(self) -> None:
        """Send nothing more for now (:meth:`cut` says which requests are still to go)."""
        for child in self.children:
            child.tell({"stop": True})

    async def cut(self, at_least: int, within: float) -> int:
        """Once every worker has held (after :meth:`stop`), the first request none is to send:
        ``at_least``, or beyond it if a worker sent later ones before it heard the stop. The
        workers then send the requests before it that they have not, and finish."""
        if self.children:
            await asyncio.wait([c.answered for c in self.children], timeout=within)
        silent = [c for c in self.children if not c.answered.done()]
        if silent:
            raise LoadWorkerError(
                f"load worker {silent[0].k} (pid {silent[0].process.pid}) did not answer the "
                f"stop within {within:g}s{silent[0].said()}"
            )
        n = self.load.workers
        cut = max([at_least, *(c.next - n + 1 for c in self.children if c.next is not None)])
        for child in self.children:
            child.tell({"cut": cut})
        return cut

    async def finish(self, within: float) -> None:
        """Wait until every worker has finished its requests and exited; a worker that has not
        within ``within`` seconds is killed, and a :class:`LoadWorkerError` says so."""
        if self.children:
            await asyncio.wait([c.ended for c in self.children], timeout=within)
        hung = [c for c in self.children if not c.ended.done()]
        for child in hung:
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
        await self._reap()
        if hung:
            raise LoadWorkerError(
                f"load worker {hung[0].k} (pid {hung[0].process.pid}) had not finished "
                f"{within:g}s after the load stopped; it was killed{hung[0].said()}"
            )

    async def aclose(self) -> None:
        """Kill any worker still running (requests in flight are abandoned), then reap."""
        self.closing = True
        for child in self.children:
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
        await self._reap()

    async def _reap(self) -> None:
        for child in self.children:
            await child.process.wait()
            for task in child.tasks:
                task.cancel()
            await asyncio.gather(*child.tasks, return_exceptions=True)
            if child.process.stdin is not None:
                child.process.stdin.close()

    async def _listen(self, child: _Child) -> None:
        """Hear the worker's frames until its stdout ends; a worker that fails or ends without
        saying it is done is reported to ``on_failure``."""
        stdout = child.process.stdout
        failure: LoadWorkerError | None = None
        try:
            if stdout is None:
                raise LoadWorkerError(f"load worker {child.k} has no stdout")
            while True:
                head = await stdout.readexactly(4)
                message = pickle.loads(await stdout.readexactly(int.from_bytes(head, "big")))
                if message[0] == "batch":
                    child.in_flight = message[1]
                    self.on_outcomes(message[2])
                elif message[0] == "ready":
                    child.ready.set_result(None)
                elif message[0] in ("stopped", "done"):
                    child.done = message[0] == "done"
                    child.next = message[1]
                    if not child.answered.done():
                        child.answered.set_result(None)
                elif message[0] == "error":
                    raise LoadWorkerError(f"load worker {child.k} failed: {message[1]}")
        except asyncio.IncompleteReadError:
            if not child.done:
                code = await child.process.wait()
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited with status {code}"
                )
                await asyncio.wait(child.tasks[1:], timeout=1.0)  # the rest of its stderr
                failure = LoadWorkerError(
                    f"load worker {child.k} (pid {child.process.pid}) {how} before its "
                    f"requests were done{child.said()}"
                )
        except LoadWorkerError as exc:
            failure = exc
        except Exception as exc:  # recording its outcomes failed: a bug of ours, said as such
            failure = LoadWorkerError(f"the outcomes of load worker {child.k} were lost: {exc!r}")
        child.in_flight = 0
        if not child.answered.done():
            child.answered.set_result(None)
        child.ended.set_result(failure)
        if failure is not None and not self.closing:
            self.on_failure(failure)

    async def _keep_stderr(self, child: _Child) -> None:
        stderr = child.process.stderr
        while stderr is not None and (chunk := await stderr.read(4096)):
            child.stderr += chunk
            del child.stderr[: -_KEPT_STDERR * 2]
