"""The safety valve: abort conditions watched on every sample, the run's time limit, and the
kill switch (a file, a signal, ``chaoskit halt``) — whatever the statistics would say.

The valve only decides; the runner acts on its decision (revert everything, then record why).
It reads current metric values through a callable, so it knows nothing of HTTP or probes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..model.safety import AbortCondition, Safety, Threshold
from ..units import Duration, Percent, Rate

__all__ = ["Reading", "Trip", "Valve", "threshold_value"]

Reading = Callable[[str, str], float | None]
"""``read(metric, group)``: the metric's current value in base units (seconds, a fraction,
per second, or the probe's number), or None when there is not enough data yet."""


def threshold_value(limit: Threshold) -> float:
    """A threshold in base units: seconds, a fraction (20% → 0.2), per second, or as is."""
    if isinstance(limit, Duration):
        return limit.nanoseconds / 1e9
    if isinstance(limit, Percent):
        return float(limit.percent) / 100
    if isinstance(limit, Rate):
        return limit.per_second
    return float(limit)


@dataclass(frozen=True)
class Trip:
    """Why the valve tripped, for the result and the console."""

    reason: str
    """``abort_when``, ``max_duration``, ``kill_file`` or ``signal``."""
    detail: str
    at: float
    """Monotonic time of the decision."""
    metric: str | None = None
    value: float | None = None


class Valve:
    """Decides, on each :meth:`check`, whether the run must stop now."""

    def __init__(
        self,
        safety: Safety,
        read: Reading,
        *,
        kill_file: Path | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.safety = safety
        self._read = read
        self._clock = clock
        self.kill_file = kill_file
        self.started = clock() if started is None else started
        self._breached_since: dict[int, float] = {}
        self.tripped: Trip | None = None

    def pull(self, reason: str, detail: str) -> Trip:
        """Trip by hand (a signal); the first trip is the one that counts."""
        if self.tripped is None:
            self.tripped = Trip(reason, detail, self._clock())
        return self.tripped

    def check(self) -> Trip | None:
        """Evaluate every condition now; the trip, if the run must stop."""
        if self.tripped is not None:
            return self.tripped
        now = self._clock()
        limit = self.safety.max_duration.nanoseconds / 1e9
        if now - self.started >= limit:
            return self.pull(
                "max_duration", f"the run reached its limit of {self.safety.max_duration}"
            )
        if self.kill_file is not None and self.kill_file.exists():
            return self.pull("kill_file", f"{self.kill_file} appeared (chaoskit halt)")
        for index, condition in enumerate(self.safety.abort_when):
            trip = self._condition(index, condition, now)
            if trip is not None:
                self.tripped = trip
                return trip
        return None

    def _condition(self, index: int, condition: AbortCondition, now: float) -> Trip | None:
        value = self._read(condition.metric, condition.group)
        bound = threshold_value(condition.limit)
        above = condition.above is not None
        breached = value is not None and (value > bound if above else value < bound)
        if not breached:
            self._breached_since.pop(index, None)
            return None
        since = self._breached_since.setdefault(index, now)
        if now - since < condition.for_.nanoseconds / 1e9:
            return None
        side = "above" if above else "below"
        lasting = f" for {condition.for_}" if condition.for_.nanoseconds else ""
        where = f"{condition.metric} ({condition.group})"
        return Trip(
            "abort_when",
            f"{where} was {value:g}, {side} {condition.limit}{lasting}",
            now,
            condition.metric,
            value,
        )
