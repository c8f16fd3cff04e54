"""How late the runner's event loop wakes up. Every request's send time, every latency and the
watchdog's lease are kept by that loop, so a stall (a slow call that slipped onto it, a loaded
or swapping machine) shows up as latency the system under test never caused. The run records
the worst stall, and the reports warn when it was large enough to distort the figures."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["DISTORTING", "LoopLag"]

DISTORTING = 0.1
"""A stall this long (seconds) or longer is worth a warning beside latency figures."""


@dataclass
class LoopLag:
    """A sleeper that asks for ``interval`` and keeps how much later it woke up."""

    interval: float = 0.05
    worst: float = 0.0
    worst_wall: float | None = None
    stalls: int = 0
    """Wake-ups at least :data:`DISTORTING` late."""
    stalled: float = 0.0
    """Seconds lost in those wake-ups."""
    looks: int = 0

    async def run(self) -> None:
        """Measure until cancelled."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(self.interval)
            self.note(time.monotonic() - asked - self.interval)

    def note(self, late: float) -> None:
        """Count one wake-up ``late`` seconds after it was due."""
        self.looks += 1
        if late >= DISTORTING:
            self.stalls += 1
            self.stalled += late
        if late > self.worst:
            self.worst, self.worst_wall = late, time.time()

    def to_json(self) -> dict[str, Any]:
        """The figures for result.json (``event_loop``)."""
        return {
            "interval": self.interval,
            "looks": self.looks,
            "worst_lag": round(self.worst, 6),
            "worst_wall": self.worst_wall,
            "stalls": self.stalls,
            "stalled": round(self.stalled, 6),
            "distorting": DISTORTING,
        }
