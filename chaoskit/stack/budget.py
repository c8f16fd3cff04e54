"""A retry budget: retries may add at most a share of the traffic (plus a small floor), so that
retries cannot multiply the load on a backend that is already failing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryBudget"]


@dataclass
class RetryBudget:
    """A token bucket: each request deposits ``ratio`` tokens, each retry spends one, and
    ``floor_per_second`` tokens trickle in regardless (so a quiet service can still retry)."""

    ratio: float = 0.2
    floor_per_second: float = 2.0
    capacity: float = 20.0
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)
    spent: int = field(default=0, init=False)
    refused: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._tokens = self.capacity
        self._stamp = self.clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(
            self.capacity, self._tokens + (now - self._stamp) * self.floor_per_second
        )
        self._stamp = now

    def deposit(self) -> None:
        """A request was made."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """May a retry be made now? Spends a token if so."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.spent += 1
            return True
        self.refused += 1
        return False
