"""Open-loop HTTP load: request ``i`` is due at ``start + i / rate`` whatever the system does.

Latency runs from the due time, not from when the request finally left, so a system that
stalls cannot hide the stall by slowing the generator down (no coordinated omission). The
client is aiohttp: on this project's 2-core machine it sustained 2,000 requests/s in 0.4 of a
core where httpx.AsyncClient could not keep 500/s in a whole core.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ..model.experiment import Load
from ._errors import LoadConfigError, refuse_placeholders
from ._samples import ErrorClass, RequestSamples
from ._timer import MonotonicTimer

__all__ = ["GroupOf", "LoadGenerator", "classify"]

GroupOf = Callable[[str | None], str | None]
"""Maps the value of ``load.group_header`` in an answer (None: no answer or no header) to the
request's group tag, e.g. ``"control"`` or ``"experiment"``; None leaves it untagged."""

_SPARE_FILES = 64
"""File descriptors kept free beyond one per request in flight (logs, probes, the journal)."""


class LoadGenerator:
    """Sends ``load.rate`` requests per second to ``load.url`` until stopped, recording each.

    At most ``load.max_in_flight`` requests are outstanding; a request due beyond that is not
    sent and is recorded as ``overload`` at its due time, so the schedule never slips.
    """

    def __init__(
        self,
        load: Load,
        *,
        group_of: GroupOf | None = None,
        samples: RequestSamples | None = None,
    ) -> None:
        refuse_placeholders(load.url, "load 'url'", LoadConfigError)
        parts = urlsplit(load.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LoadConfigError(
                f"load 'url' must be an http:// or https:// URL with a host, got '{load.url}'"
            )
        self.load = load
        self.rate = load.rate.per_second
        self.samples = samples if samples is not None else RequestSamples()
        self._group_of = group_of
        self._url = URL(load.url, encoded=False)
        self._body = load.body.encode() if load.body is not None else None
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Future[None] | None = None
        self._timer: MonotonicTimer | None = None
        self._failure: BaseException | None = None
        self._start: float | None = None

    @property
    def in_flight(self) -> int:
        """Requests sent and not finished."""
        return self._in_flight

    @property
    def start(self) -> float | None:
        """Monotonic time request 0 was due, once :meth:`run` has begun."""
        return self._start

    def stop(self) -> None:
        """Send nothing more; :meth:`run` returns once the requests in flight have finished."""
        if self._timer is not None:
            self._timer.cancel()
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    async def run(self, duration: float | None = None) -> RequestSamples:
        """Send requests on schedule for ``duration`` seconds (``round(duration * rate)``
        requests) or until :meth:`stop`, then wait for those in flight (at most the timeout).

        Cancelling it abandons requests in flight; their rows stay out of every query.
        """
        if self._finished is not None:
            raise RuntimeError("a LoadGenerator runs once; make a new one")
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be above 0 seconds, got {duration}")
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        total = None if duration is None else max(1, round(duration * self.rate))
        _allow_open_files(self.load.max_in_flight + _SPARE_FILES)
        connector = aiohttp.TCPConnector(limit=self.load.max_in_flight, limit_per_host=0)
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.load.timeout.seconds),
            headers=self.load.headers,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
        try:
            self._start = start = time.monotonic()
            wall0 = time.time() - (time.monotonic() - start)
            self._schedule(loop, session, start, wall0, total)
            await self._finished
            await self._drain()
        finally:
            self.stop()
            if self._timer is not None:
                self._timer.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await session.close()
        if self._failure is not None:
            raise self._failure
        return self.samples

    def _schedule(
        self,
        loop: asyncio.AbstractEventLoop,
        session: aiohttp.ClientSession,
        start: float,
        wall0: float,
        total: int | None,
    ) -> None:
        """Start a timer chain that sends each request when it is due."""
        rate, cap, samples = self.rate, self.load.max_in_flight, self.samples
        index = 0

        def tick() -> None:
            nonlocal index
            now = time.monotonic()
            due = start + index / rate
            while due <= now and (total is None or index < total):
                row = samples.reserve(due, wall0 + (due - start))
                if self._in_flight >= cap:
                    samples.finish(
                        row,
                        latency=math.nan,
                        error=ErrorClass.OVERLOAD,
                        message=f"not sent: {cap} requests (max_in_flight) were outstanding",
                    )
                else:
                    self._in_flight += 1
                    task = loop.create_task(self._send(session, row, due))
                    self._tasks.add(task)
                    task.add_done_callback(self._forget)
                index += 1
                due = start + index / rate
            if total is not None and index >= total:
                self.stop()
            else:
                timer.at(due)

        self._timer = timer = MonotonicTimer(loop, tick)
        tick()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
            self.stop()

    async def _drain(self) -> None:
        """Wait for the requests in flight; each ends within the timeout on its own."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.load.timeout.seconds + 1.0)

    async def _send(self, session: aiohttp.ClientSession, row: int, due: float) -> None:
        lag = time.monotonic() - due
        status = 0
        error = ErrorClass.NONE
        message: str | None = None
        tag: str | None = None
        header = self.load.group_header
        try:
            async with session.request(self.load.method, self._url, data=self._body) as answer:
                await answer.read()
                end = time.monotonic()
                status = answer.status
                if header is not None:
                    tag = answer.headers.get(header)
        except Exception as exc:
            end = time.monotonic()
            error = classify(exc)
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if status >= 500:
            error = ErrorClass.HTTP_5XX
        elif status >= 400:
            error = ErrorClass.HTTP_4XX
        if error in (ErrorClass.HTTP_4XX, ErrorClass.HTTP_5XX):
            message = f"{self.load.method} {self.load.url} answered {status}"
        group = self._group_of(tag) if self._group_of is not None else tag
        self.samples.finish(
            row,
            latency=end - due,
            status=status,
            error=error,
            group=group,
            send_lag=lag,
            message=message,
        )


def classify(exc: BaseException) -> ErrorClass:
    """The error class of an exception raised by an aiohttp request."""
    if isinstance(exc, TimeoutError):
        return ErrorClass.TIMEOUT  # also aiohttp's ServerTimeoutError, ConnectionTimeoutError
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorClass.CONNECT
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | ConnectionError,
    ):
        return ErrorClass.RESET
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorClass.PROTOCOL
    return ErrorClass.OTHER


def _allow_open_files(needed: int) -> None:
    """Raise the soft open-file limit towards ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
