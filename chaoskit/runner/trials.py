"""A trial's place in time: when its fault phase began and ended, and its recovery ended."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window"]


@dataclass(frozen=True)
class Window:
    """One trial's times (monotonic seconds): fault phase and recovery phase."""

    fault_start: float
    fault_end: float
    recovery_end: float
