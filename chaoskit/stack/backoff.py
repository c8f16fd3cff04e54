"""Chef Habitat's restart backoff: decorrelated jitter between a minimum and a maximum, back to
the minimum after a cooldown without restarts.

Written by hand: retry libraries (tenacity included) model waits between attempts of one call,
not a supervisor's restart history with a cooldown that resets it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RestartBackoff"]


@dataclass
class RestartBackoff:
    """Wait before the next restart: first ``minimum``, then ``min(maximum, U(minimum, 3·prev))``.

    A restart more than ``cooldown`` seconds after the previous one starts over at ``minimum``.
    ``minimum == maximum`` gives a fixed backoff.
    """

    minimum: float
    maximum: float
    cooldown: float
    rng: random.Random = field(default_factory=random.Random)
    _previous: float | None = field(default=None, init=False)
    _last_restart: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum:
            raise ValueError(
                f"backoff needs 0 <= minimum <= maximum, got {self.minimum} and {self.maximum}"
            )
        if self.cooldown < 0:
            raise ValueError(f"cooldown must not be negative, got {self.cooldown}")

    def next_wait(self, now: float) -> float:
        """The wait before a restart wanted at monotonic time ``now``; records the restart."""
        cooled = self._last_restart is not None and now - self._last_restart >= self.cooldown
        if self._previous is None or cooled:
            wait = self.minimum
        else:
            upper = max(self.minimum, 3 * self._previous)
            wait = min(self.maximum, self.rng.uniform(self.minimum, upper))
        self._previous = wait
        self._last_restart = now + wait
        return wait

    def reset(self) -> None:
        """Forget the history: the next wait is ``minimum``."""
        self._previous = None
        self._last_restart = None
