"""A circuit breaker per backend: sliding-window failure rate, OPEN fails fast, HALF_OPEN lets a
few probes through after a recovery timeout, CLOSED again after enough successes.

Written by hand: the Python breakers on PyPI (pybreaker, aiobreaker, purgatory) count
consecutive failures; none has a failure-rate window with limited half-open probes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError"]


class BreakerState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """The breaker refused a call: the backend is presumed down."""


@dataclass
class CircuitBreaker:
    """Decide per call whether a backend may be tried, from the outcomes of recent calls."""

    window: int = 20
    """How many recent outcomes the failure rate is computed over."""
    min_calls: int = 5
    """No opening before this many outcomes are in the window."""
    failure_rate: float = 0.5
    """Open when this share of the window failed."""
    recovery_timeout: float = 5.0
    """Seconds OPEN before probes are let through (HALF_OPEN)."""
    half_open_probes: int = 2
    """Calls allowed at once while HALF_OPEN."""
    close_after: int = 3
    """Successful probes needed to close again."""
    clock: Callable[[], float] = time.monotonic
    _outcomes: deque[bool] = field(init=False)
    _state: BreakerState = field(default=BreakerState.CLOSED, init=False)
    _opened_at: float = field(default=0.0, init=False)
    _probes_in_flight: int = field(default=0, init=False)
    _probe_successes: int = field(default=0, init=False)
    opened: int = field(default=0, init=False)
    """How many times the breaker has opened (for metrics)."""

    def __post_init__(self) -> None:
        if not (1 <= self.min_calls <= self.window and 0 < self.failure_rate <= 1):
            raise ValueError("breaker needs 1 <= min_calls <= window and 0 < failure_rate <= 1")
        self._outcomes = deque(maxlen=self.window)

    @property
    def state(self) -> BreakerState:
        """The current state; OPEN turns HALF_OPEN once the recovery timeout has passed."""
        if (
            self._state is BreakerState.OPEN
            and self.clock() - self._opened_at >= self.recovery_timeout
        ):
            self._state = BreakerState.HALF_OPEN
            self._probes_in_flight = 0
            self._probe_successes = 0
        return self._state

    def acquire(self) -> None:
        """Ask to make a call; raises :class:`CircuitOpenError` when it must fail fast."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpenError("circuit open")
        if state is BreakerState.HALF_OPEN:
            if self._probes_in_flight >= self.half_open_probes:
                raise CircuitOpenError("circuit half-open: probes already in flight")
            self._probes_in_flight += 1

    def success(self) -> None:
        """Record a successful call made after :meth:`acquire`."""
        if self._state is BreakerState.HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.close_after:
                self._state = BreakerState.CLOSED
                self._outcomes.clear()
            return
        self._outcomes.append(True)

    def failure(self) -> None:
        """Record a failed call made after :meth:`acquire`."""
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self._state is BreakerState.OPEN:
            return
        self._outcomes.append(False)
        failed = self._outcomes.count(False)
        if len(self._outcomes) >= self.min_calls and failed >= self.failure_rate * len(
            self._outcomes
        ):
            self._open()

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self.clock()
        self._probes_in_flight = 0
        self._probe_successes = 0
        self.opened += 1
