"""A sending process of the load generator (``python -m chaoskit.load._worker PARENT_PID``).

Worker ``k`` of ``n`` sends requests ``k, k + n, k + 2n, ...`` of the generator's open-loop
schedule (request ``i`` due at ``start + i / rate``) with its share of ``max_in_flight``, and
writes the outcomes to stdout in batches, one at least every :data:`FLUSH` seconds. The parent
speaks on stdin, one JSON object a line: the settings, then ``{"start": t}``, then perhaps
``{"stop": true}`` (hold: send nothing more and say which request is next) and ``{"cut": c}``
(send the requests before ``c`` not sent yet, no other, and finish). The end of stdin means the
parent is gone or gave up: the worker exits at once, as it does when the parent dies
(``PR_SET_PDEATHSIG``).

A frame on stdout is a 4-byte length and a pickle (this process and its parent only):
``("ready",)``, ``("batch", in_flight, outcomes)``, ``("stopped", next)``, ``("done", next)``
or ``("error", text)``, where ``next`` is the first of the worker's requests it has not sent.
An outcome is an :data:`Outcome`; its message comes with the worker's first outcome of each
error class only (the samples keep the first message of each class).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from ._http import Answer, HttpClient, allow_open_files
from ._samples import ErrorClass
from ._timer import MonotonicTimer

__all__ = ["FLUSH", "Outcome", "frame"]

FLUSH = 0.02
"""Seconds between batches of outcomes: how far behind the parent's samples may be."""

Outcome = tuple[int, float, float, int, int, str | None, str | None]
"""(request index, latency, send lag, status, error class, group tag, message or None)."""

_PR_SET_PDEATHSIG = 1


def frame(message: tuple[Any, ...]) -> bytes:
    """``message`` as one frame: its length (4 bytes, big-endian), then its pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(4, "big") + body


class _Out(asyncio.Protocol):
    """The frames' pipe; ``closed`` is done once everything written has left."""

    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Worker:
    """Sends this worker's share of the schedule and reports each outcome."""

    def __init__(self, settings: dict[str, Any], out: asyncio.WriteTransport) -> None:
        loop = asyncio.get_running_loop()
        self.out = out
        self.n: int = settings["n"]
        self.rate: float = settings["rate"]
        self.cap: int = settings["cap"]
        self.limit: float = math.inf if settings["total"] is None else settings["total"]
        self.answered = f"{settings['method']} {settings['url']} answered"
        self.client = HttpClient(
            settings["url"],
            method=settings["method"],
            headers=settings["headers"],
            body=None if settings["body"] is None else settings["body"].encode(),
            timeout=settings["timeout"],
            group_header=settings["group_header"],
        )
        self.index: int = settings["k"]
        self.start: float | None = None
        self.in_flight = 0
        self.reported = 0
        self.outcomes: list[Outcome] = []
        self.said: set[ErrorClass] = set()
        self.sending = True
        self.held = False
        self.finished: asyncio.Future[None] = loop.create_future()
        self.timer = MonotonicTimer(loop, self.guarded(self.tick))
        self.flusher: asyncio.TimerHandle | None = None

    def guarded(self, call: Callable[..., None]) -> Callable[..., None]:
        """``call``, ending the worker with its error if it raises (a callback's error would
        otherwise only be logged, and the parent would wait in vain)."""

        def run(*args: Any) -> None:
            try:
                call(*args)
            except Exception as exc:
                if not self.finished.done():
                    self.finished.set_exception(exc)

        return run

    def go(self, start: float) -> None:
        self.start = start
        self.flush()
        self.timer.at(start)

    def command(self, command: dict[str, Any]) -> None:
        if "stop" in command:
            self.held = True
            self.timer.cancel()
            self.out.write(frame(("stopped", self.index)))
        elif "cut" in command:
            self.held = False
            self.limit = min(self.limit, command["cut"])
            self.tick()

    def tick(self) -> None:
        start, rate, n = self.start, self.rate, self.n
        if start is None or self.held:
            return
        now = time.monotonic()
        due = start + self.index / rate
        while self.index < self.limit and due <= now:
            if self.in_flight >= self.cap:
                self.note(self.index, math.nan, 0.0, status=0, error=ErrorClass.OVERLOAD,
                          message=f"not sent: {self.cap} requests (this worker's share of "
                          "max_in_flight) were outstanding")  # fmt: skip
            else:
                self.in_flight += 1
                lag = time.monotonic() - due
                self.client.send(self.guarded(partial(self.answer, self.index, due, lag)))
            self.index += n
            due = start + self.index / rate
        if self.index < self.limit:
            self.timer.at(due)
        else:
            self.sending = False
            self.timer.cancel()
            self.maybe_done()

    def answer(self, index: int, due: float, lag: float, answer: Answer) -> None:
        self.in_flight -= 1
        message = answer.message
        if answer.error in (ErrorClass.HTTP_4XX, ErrorClass.HTTP_5XX):
            message = f"{self.answered} {answer.status}"
        self.note(index, answer.end - due, lag, status=answer.status, error=answer.error,
                  message=message, tag=answer.tag)  # fmt: skip
        self.maybe_done()

    def note(
        self,
        index: int,
        latency: float,
        lag: float,
        *,
        status: int,
        error: ErrorClass,
        message: str | None,
        tag: str | None = None,
    ) -> None:
        if error in self.said:
            message = None
        elif message is not None:
            self.said.add(error)
        self.outcomes.append((index, latency, lag, status, int(error), tag, message))

    def maybe_done(self) -> None:
        if not self.sending and self.in_flight == 0 and not self.finished.done():
            self.finished.set_result(None)

    def flush(self) -> None:
        """Write the outcomes so far (and the count in flight); again in :data:`FLUSH`."""
        if self.outcomes or self.in_flight != self.reported:
            self.out.write(frame(("batch", self.in_flight, self.outcomes)))
            self.outcomes, self.reported = [], self.in_flight
        self.flusher = asyncio.get_running_loop().call_later(FLUSH, self.flush)

    def close(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
        self.flush_now()
        self.timer.close()
        self.client.close()

    def flush_now(self) -> None:
        if self.outcomes:
            self.out.write(frame(("batch", self.in_flight, self.outcomes)))
            self.outcomes = []


async def _main() -> int:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    stdin = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115 (the transport closes it)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), stdin)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to stderr and cannot break a frame
    pipe = _Out()
    frames = open(out_fd, "wb", buffering=0)  # noqa: SIM115 (the transport closes it)
    out, _ = await loop.connect_write_pipe(lambda: pipe, frames)

    async def command() -> dict[str, Any]:
        line = await commands.readline()
        if not line:  # the parent is gone or gave up: abandon everything at once
            os._exit(0)
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    worker: _Worker | None = None
    code = 0
    try:
        settings = await command()
        allow_open_files(settings["cap"])
        worker = _Worker(settings, out)
        out.write(frame(("ready",)))
        worker.go((await command())["start"])

        async def listen() -> None:
            while True:
                worker.guarded(worker.command)(await command())

        listening = loop.create_task(listen())
        try:
            await worker.finished
        finally:
            listening.cancel()
            worker.close()
        out.write(frame(("done", worker.index)))
    except Exception as exc:  # the parent raises it as a LoadWorkerError
        if worker is not None:
            worker.flush_now()
        out.write(frame(("error", f"{type(exc).__name__}: {exc}")))
        code = 1
    out.close()
    await pipe.closed
    return code


def _die_with(parent: int) -> None:
    """Be killed when the parent dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def main() -> None:
    parent = int(sys.argv[1])
    _die_with(parent)
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
