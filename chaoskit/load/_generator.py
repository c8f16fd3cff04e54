"""Open-loop HTTP load: request ``i`` is due at ``start + i / rate`` whatever the system does.

Latency runs from the due time, not from when the request finally left, so a system that
stalls cannot hide the stall by slowing the generator down (no coordinated omission), to when
the answer's last bytes arrived (the kernel's receive time where there is one). Each request is
written from the timer's callback itself by a lean keep-alive client (:mod:`._http`), so what
the generator adds to a latency is its send lag, a few µs at the median.

With ``load.workers`` above 1, sending processes (:mod:`._workers`) share the schedule and this
process keeps the samples: it reserves each request's row when it is due and finishes it when
the worker's batch reports how the request ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np

from ..model.experiment import Load
from ._errors import LoadConfigError, LoadWorkerError, refuse_placeholders
from ._http import Answer, HttpClient, allow_open_files
from ._samples import ErrorClass, RequestSamples, Samples
from ._timer import MonotonicTimer
from ._worker import FLUSH, Outcome
from ._workers import Workers

__all__ = ["GroupOf", "LoadGenerator", "send_figures"]

GroupOf = Callable[[str | None], str | None]
"""Maps the value of ``load.group_header`` in an answer (None: no answer or no header) to the
request's group tag, e.g. ``"control"`` or ``"experiment"``; None leaves it untagged."""

_GO_AHEAD = 0.01
"""Seconds between telling the workers the start and request 0's due time."""

_STOP_GRACE = 5.0
"""Seconds beyond the timeout the workers have to finish their last requests and exit."""


class LoadGenerator:
    """Sends ``load.rate`` requests per second to ``load.url`` until stopped, recording each.

    At most ``load.max_in_flight`` requests are outstanding; a request due beyond that is not
    sent and is recorded as ``overload`` at its due time, so the schedule never slips. With
    ``load.workers`` processes, each has its share of that cap, and ``group_of`` still runs
    here.
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
        self._body = load.body.encode() if load.body is not None else None
        self._client = HttpClient(
            load.url,
            method=load.method,
            headers=load.headers,
            body=self._body,
            timeout=load.timeout.seconds,
            group_header=load.group_header,
        )
        self._in_flight = 0
        self._stopped = False
        self._abandoned = False
        self._drained: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None
        self._timer: MonotonicTimer | None = None
        self._failure: BaseException | None = None
        self._start: float | None = None
        self._workers: Workers | None = None
        self._reserving: asyncio.TimerHandle | None = None
        self._reserved = 0
        """Rows reserved (with workers): requests 0 to this one, exclusive."""
        self._first_row = 0
        self._wall0 = 0.0
        self._total: float = math.inf

    @property
    def in_flight(self) -> int:
        """Requests sent and not finished (with workers: as of their last batches)."""
        return self._in_flight if self._workers is None else self._workers.in_flight

    @property
    def start(self) -> float | None:
        """Monotonic time request 0 was due, once :meth:`run` has begun (and the workers, if
        any, were ready)."""
        return self._start

    def stop(self) -> None:
        """Send nothing more; :meth:`run` returns once the requests in flight have finished."""
        if self._workers is not None and self._start is not None and not self._stopped:
            if not self._abandoned:
                self._reserve_due(time.monotonic())  # every request due by now is to be sent
            self._workers.stop()
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._reserving is not None:
            self._reserving.cancel()
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
        if self._stopped:  # stopped before it began (a stop signal during bring-up)
            self._finished.set_result(None)
        total = None if duration is None else max(1, round(duration * self.rate))
        if self.load.workers > 1:
            self._client.close()
            return await self._run_workers(loop, total)
        allow_open_files(self.load.max_in_flight)
        client = self._client
        try:
            self._start = start = time.monotonic()
            wall0 = time.time() - (time.monotonic() - start)
            if not self._stopped:
                self._schedule(loop, client, start, wall0, total)
            await self._finished
            await self._drain(loop)
        except BaseException:
            self._abandoned = True  # rows of requests still in flight stay pending
            raise
        finally:
            self.stop()
            if self._timer is not None:
                self._timer.close()
            client.close()
        if self._failure is not None:
            raise self._failure
        return self.samples

    def _schedule(
        self,
        loop: asyncio.AbstractEventLoop,
        client: HttpClient,
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
                    lag = time.monotonic() - due
                    client.send(partial(self._record, row, due, lag))
                index += 1
                due = start + index / rate
            if total is not None and index >= total:
                self.stop()
            elif not self._stopped:
                timer.at(due)

        self._timer = timer = MonotonicTimer(loop, tick)
        tick()

    def _record(self, row: int, due: float, lag: float, answer: Answer) -> None:
        """Write how request ``row`` ended into the samples."""
        self._in_flight -= 1
        if self._in_flight == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._abandoned:
            return
        group = answer.tag
        if self._group_of is not None:
            try:
                group = self._group_of(answer.tag)
            except Exception as exc:  # the caller's function: stop the run with its error
                if self._failure is None:
                    self._failure = exc
                    self.stop()
                return
        message = answer.message
        if answer.error in (ErrorClass.HTTP_4XX, ErrorClass.HTTP_5XX):
            message = f"{self.load.method} {self.load.url} answered {answer.status}"
        self.samples.finish(
            row,
            latency=answer.end - due,
            status=answer.status,
            error=answer.error,
            group=group,
            send_lag=lag,
            message=message,
        )

    async def _run_workers(
        self, loop: asyncio.AbstractEventLoop, total: int | None
    ) -> RequestSamples:
        """Run the schedule on ``load.workers`` processes, recording here what they report."""
        finished = loop.create_future() if self._finished is None else self._finished
        if self._stopped:
            return self.samples
        self._workers = workers = Workers(
            self.load, total=total, on_outcomes=self._outcomes, on_failure=self._worker_failed
        )
        try:
            await workers.open(finished)
            if not self._stopped:
                self._total = math.inf if total is None else total
                self._start = start = time.monotonic() + _GO_AHEAD
                self._wall0 = time.time() + _GO_AHEAD
                workers.go(start)
                self._reserve_on_time(loop)
                await finished
                cut = await workers.cut(self._reserved, _STOP_GRACE)
                while self._reserved < cut:  # due before the workers held: they send these too
                    self._reserve_next()
                await workers.finish(self.load.timeout.seconds + _STOP_GRACE)
        except BaseException:
            self._abandoned = True
            raise
        finally:
            self.stop()
            await workers.aclose()
        if self._failure is not None:
            raise self._failure
        return self.samples

    def _reserve_on_time(self, loop: asyncio.AbstractEventLoop) -> None:
        """Reserve each request's row once it is due, checking every :data:`FLUSH` / 2 seconds
        (so a request nobody answers shows to the valve as waiting, then as a timeout)."""

        def tick() -> None:
            self._reserve_due(time.monotonic())
            if self._reserved >= self._total:
                self.stop()
            elif not self._stopped:
                self._reserving = loop.call_later(FLUSH / 2, tick)

        tick()

    def _reserve_due(self, now: float) -> None:
        """Reserve the rows of every request due by ``now``."""
        start = self._start or 0.0
        while self._reserved < self._total and start + self._reserved / self.rate <= now:
            self._reserve_next()

    def _reserve_next(self) -> None:
        start = self._start or 0.0
        due = start + self._reserved / self.rate
        row = self.samples.reserve(due, self._wall0 + (due - start))
        if self._reserved == 0:
            self._first_row = row
        self._reserved += 1

    def _outcomes(self, outcomes: list[Outcome]) -> None:
        """Record a batch of a worker's outcomes into the samples."""
        if self._abandoned:
            return
        group_of, samples = self._group_of, self.samples
        for index, latency, lag, status, error, tag, message in outcomes:
            while self._reserved <= index:  # due by the worker's clock, not yet by our tick
                self._reserve_next()
            group = tag
            if group_of is not None:
                try:
                    group = group_of(tag)
                except Exception as exc:  # the caller's function: stop the run with its error
                    if self._failure is None:
                        self._failure = exc
                        self.stop()
                    return
            samples.finish(
                self._first_row + index,
                latency=latency,
                status=status,
                error=ErrorClass(error),
                group=group,
                send_lag=lag,
                message=message,
            )

    def _worker_failed(self, failure: LoadWorkerError) -> None:
        if self._failure is None:
            self._failure = failure
        self.stop()

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the requests in flight; each ends within the timeout on its own."""
        if self._in_flight:
            self._drained = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained, self.load.timeout.seconds + 1.0)


_LAG_EDGES: Final = np.geomspace(1e-7, 100.0, 2001)
"""Send-lag histogram bins from 0.1 µs to 100 s, each 0.7 % wider than the one before."""


def send_figures(windows: Samples | Iterable[Samples]) -> dict[str, Any]:
    """How the generator kept to its schedule over ``windows`` (one, or the chunks of a whole
    run): requests recorded, those not sent (``overload``), and the send lag of the sent ones
    in seconds: median and p99 from a log histogram (within 0.7 %, in the same memory however
    long the run), and the worst exactly."""
    counts = np.zeros(_LAG_EDGES.size + 1, np.int64)
    requests = overload = 0
    worst: float | None = None
    for window in [windows] if isinstance(windows, Samples) else windows:
        sent = window.send_lag[window.error != ErrorClass.OVERLOAD].astype(np.float64)
        requests += len(window)
        overload += len(window) - sent.size
        counts += np.bincount(np.searchsorted(_LAG_EDGES, sent), minlength=counts.size)
        if sent.size:
            worst = max(float(sent.max()), worst if worst is not None else -math.inf)
    figures: dict[str, Any] = {"requests": requests, "overload": overload}
    total = int(counts.sum())
    for name, q in (("send_lag_p50", 0.50), ("send_lag_p99", 0.99)):
        if not total:
            figures[name] = None
            continue
        at = int(np.searchsorted(np.cumsum(counts), math.ceil(q * total)))
        edge = _LAG_EDGES[min(at, _LAG_EDGES.size - 1)]  # the bin's upper edge: never too low
        figures[name] = round(float(min(edge, worst if worst is not None else edge)), 6)
    figures["send_lag_max"] = None if worst is None else round(worst, 6)
    return figures
