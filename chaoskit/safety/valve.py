"""The safety valve: abort conditions watched on every sample, the run's time limit, and the
kill switch (a file, a signal, ``chaoskit halt``) — whatever the statistics would say.

The valve only decides; the runner acts on its decision (revert everything, then record why).
It reads each condition through a :class:`Watch`, so it knows nothing of HTTP or probes; it
keeps, per condition, why it did or did not fire.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..model.safety import AbortCondition, Safety, Threshold
from ..units import Duration, Percent, Rate
from .policy import Policy

__all__ = [
    "ConditionRecord",
    "Guard",
    "Reading",
    "Trip",
    "Valve",
    "Watch",
    "shown",
    "threshold_value",
    "window_guard",
]

Guard = Callable[[], tuple[str, str] | None]
"""A check the valve makes on every tick besides its conditions: ``(reason, detail)`` when the
run must stop now, else None."""


@dataclass(frozen=True)
class Reading:
    """What one abort condition sees at one check."""

    value: float | None
    """The metric now, in base units, for people (None: no data yet)."""
    breached: bool | None
    """Beyond the limit now; None when the data cannot tell (no request has an outcome yet, a
    probe was never read): the breach clock then neither starts nor stops."""
    since: float | None = None
    """When the breach began (monotonic), when the data knows: the outcome of the first bad
    request. None: from the first check that saw it."""
    until: float | None = None
    """The latest bad outcome the data shows (monotonic): a breach has lasted until then, not
    until the trailing window forgets it. None: until now."""


class Watch(Protocol):
    """How the valve sees the run's measurements (the runner provides it)."""

    def read(self, condition: AbortCondition, now: float) -> Reading:
        """The condition's metric as of ``now``."""
        ...

    def scope(self, condition: AbortCondition) -> str:
        """The traffic the condition watches, in words (e.g. ``all requests``)."""
        ...


def shown(value: float | None, limit: Threshold) -> str:
    """A value of a condition's metric in its limit's unit, for people."""
    if value is None:
        return "unknown"
    if isinstance(limit, Duration):
        return f"{value * 1000:.4g}ms" if value < 10 else f"{value:.4g}s"
    if isinstance(limit, Percent):
        return f"{value * 100:.3g}%"
    if isinstance(limit, Rate):
        return f"{value:.4g}/s"
    return f"{value:g}"


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
    """``abort_when``, ``max_duration``, ``kill_file``, ``signal``, or a guard's: ``watchdog``,
    ``disk``, ``journal``, ``window``."""
    detail: str
    at: float
    """Monotonic time of the decision."""
    metric: str | None = None
    value: float | None = None


@dataclass
class ConditionRecord:
    """One abort condition over the run: what it watched and how close it came."""

    condition: AbortCondition
    scope: str
    checks: int = 0
    unknown: int = 0
    """Checks whose data could not tell (no request outcome yet, a probe never read)."""
    worst: float | None = None
    longest: float = 0.0
    """The longest breach seen, in seconds (the valve trips when it reaches ``for``)."""
    since: float | None = None
    tripped: bool = False

    def note(self, reading: Reading, now: float) -> float | None:
        """Take one reading; the breach's length so far (None: not breached)."""
        self.checks += 1
        if reading.value is not None and reading.breached is not None:
            above = self.condition.above is not None
            if self.worst is None or (reading.value > self.worst) == above:
                self.worst = reading.value
        if reading.breached is None:
            self.unknown += 1
        elif not reading.breached:
            self.since = None
            return None
        elif self.since is None:  # a breach begins: dated by the data when it can tell
            self.since = min(now, reading.since) if reading.since is not None else now
        if self.since is None:
            return None
        end = now if reading.until is None or reading.breached is None else min(now, reading.until)
        lasted = max(0.0, end - self.since)
        self.longest = max(self.longest, lasted)
        return lasted

    def to_json(self) -> dict[str, Any]:
        """For the result file: the condition in words, and what it saw."""
        c = self.condition
        side = "above" if c.above is not None else "below"
        return {
            "metric": c.metric,
            "condition": f"{c.metric} {side} {c.limit} for {c.for_}",
            "limit": threshold_value(c.limit),
            "side": side,
            "for": c.for_.nanoseconds / 1e9,
            "watched": self.scope,
            "tripped": self.tripped,
            "longest_breach": self.longest,
            "worst": self.worst,
            "worst_shown": None if self.worst is None else shown(self.worst, c.limit),
            "checks": self.checks,
            "unknown": self.unknown,
        }


class Valve:
    """Decides, on each :meth:`check`, whether the run must stop now."""

    def __init__(
        self,
        safety: Safety,
        watch: Watch,
        *,
        kill_files: Sequence[Path] = (),
        guards: Sequence[Guard] = (),
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.safety = safety
        self._watch = watch
        self._clock = clock
        self.kill_files = tuple(kill_files)
        """Any of them appearing stops the run (``<run dir>/HALT`` and the declared one)."""
        self.guards = tuple(guards)
        """Checks of the run's own ground (its watchdog, its disk, the policy's window)."""
        self.started = clock() if started is None else started
        self.records = [ConditionRecord(c, watch.scope(c)) for c in safety.abort_when]
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
        for kill_file in self.kill_files:
            if kill_file.exists():
                return self.pull("kill_file", f"{kill_file} appeared (chaoskit halt)")
        for guard in self.guards:
            found = guard()
            if found is not None:
                return self.pull(*found)
        for record in self.records:
            trip = self._condition(record, now)
            if trip is not None:
                self.tripped = trip
                return trip
        return None

    def _condition(self, record: ConditionRecord, now: float) -> Trip | None:
        condition = record.condition
        record.scope = self._watch.scope(condition)  # it can change once the draw is known
        reading = self._watch.read(condition, now)
        lasted = record.note(reading, now)
        if lasted is None or lasted < condition.for_.nanoseconds / 1e9:
            return None
        record.tripped = True
        side = "above" if condition.above is not None else "below"
        lasting = f" for {condition.for_}" if condition.for_.nanoseconds else ""
        return Trip(
            "abort_when",
            f"{condition.metric} ({record.scope}) was {shown(reading.value, condition.limit)}, "
            f"{side} {condition.limit}{lasting}",
            now,
            condition.metric,
            reading.value,
        )


def window_guard(policy: Policy) -> Guard:
    """A valve guard: the run stops when the site policy's time window closes (or a blackout
    date begins) while it lasts, as it would not have started then."""
    closes = policy.open_until(datetime.now(UTC))

    def closed() -> tuple[str, str] | None:
        if closes is None or datetime.now(UTC) < closes:
            return None
        return "window", (
            f"the site policy allows experiments until {closes:%Y-%m-%d %H:%M:%S} UTC "
            "(its windows and blackouts)"
        )

    return closed
