"""Reading a probe on a fixed interval into a time series of values and errors."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..model.metrics import ProbeMetric
from ..units import Duration
from ._errors import ProbeFailure
from ._probes import AnyProbe, ProbeReader, reader_for

__all__ = ["ProbeSampler", "ProbeSeries"]


class ProbeSeries:
    """Timestamped readings of one probe: ``value`` is NaN where the reading failed, and
    ``errors`` maps those rows to what went wrong. Times are ``time.monotonic()`` seconds,
    ``wall`` the Unix time of the same instant (when each reading began)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._time: list[float] = []
        self._wall: list[float] = []
        self._value: list[float] = []
        self.errors: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._time)

    @property
    def time(self) -> NDArray[np.float64]:
        return np.asarray(self._time, dtype=np.float64)

    @property
    def wall(self) -> NDArray[np.float64]:
        return np.asarray(self._wall, dtype=np.float64)

    @property
    def value(self) -> NDArray[np.float64]:
        return np.asarray(self._value, dtype=np.float64)

    def add(self, at: float, wall: float, value: float | None, error: str | None = None) -> None:
        """Append a reading: a value, or an error message (then the value is NaN)."""
        if (value is None) == (error is None):
            raise ValueError("give a value or an error, not both or neither")
        if self._time and at < self._time[-1]:
            raise ValueError("readings must be added in time order")
        if error is not None:
            self.errors[len(self._time)] = error
        self._time.append(at)
        self._wall.append(wall)
        self._value.append(math.nan if value is None else value)

    def window(self, start: float | None = None, end: float | None = None) -> ProbeSeries:
        """The readings taken in ``[start, end)`` (monotonic seconds; open ends allowed)."""
        times = self.time
        lo = 0 if start is None else int(np.searchsorted(times, start, side="left"))
        hi = len(times) if end is None else int(np.searchsorted(times, end, side="left"))
        part = ProbeSeries(self.name)
        part._time = self._time[lo:hi]
        part._wall = self._wall[lo:hi]
        part._value = self._value[lo:hi]
        part.errors = {i - lo: m for i, m in self.errors.items() if lo <= i < hi}
        return part

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able columns; a failed reading has value null and its error message."""
        return {
            "name": self.name,
            "time": list(self._time),
            "wall": list(self._wall),
            "value": [None if math.isnan(v) else v for v in self._value],
            "error": [self.errors.get(i) for i in range(len(self._time))],
        }


class ProbeSampler:
    """Reads a probe at ``start + k * interval``; a reading that overruns skips the missed
    ticks rather than bunching readings up afterwards."""

    def __init__(
        self,
        probe: AnyProbe,
        interval: Duration | float,
        *,
        name: str | None = None,
        series: ProbeSeries | None = None,
    ) -> None:
        seconds = interval.seconds if isinstance(interval, Duration) else float(interval)
        if not seconds > 0:
            raise ValueError(f"interval must be above 0 seconds, got {interval}")
        self.reader: ProbeReader = reader_for(probe)
        self.interval = seconds
        self.series = series if series is not None else ProbeSeries(name or probe.type)
        self._stopped = asyncio.Event()

    @classmethod
    def for_metric(cls, metric: ProbeMetric) -> ProbeSampler:
        """The sampler of a steady-state probe metric (its probe, interval and name)."""
        return cls(metric.probe, metric.interval, name=metric.name)

    def stop(self) -> None:
        """End :meth:`run` after the reading in progress (cancel the task to end it at once)."""
        self._stopped.set()

    async def run(self, duration: float | None = None) -> ProbeSeries:
        """Read every ``interval`` for ``duration`` seconds or until :meth:`stop`."""
        start = time.monotonic()
        wall0 = time.time() - (time.monotonic() - start)
        end = math.inf if duration is None else start + duration
        tick = 0
        try:
            while not self._stopped.is_set():
                due = start + tick * self.interval
                if due >= end:
                    break
                if not await self._wait_until(due):
                    break
                began = time.monotonic()
                try:
                    value: float | None = await self.reader.read()
                    error = None
                except ProbeFailure as exc:
                    value, error = None, str(exc)
                self.series.add(began, wall0 + (began - start), value, error)
                tick = max(tick + 1, math.floor((time.monotonic() - start) / self.interval) + 1)
        finally:
            await self.reader.aclose()
        return self.series

    async def _wait_until(self, when: float) -> bool:
        """Sleep until ``when``; False when stopped first."""
        delay = when - time.monotonic()
        if delay <= 0:
            return not self._stopped.is_set()
        try:
            async with asyncio.timeout(delay):
                await self._stopped.wait()
        except TimeoutError:
            return True
        return False
