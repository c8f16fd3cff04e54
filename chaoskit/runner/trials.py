"""A trial's place in time: its fault phase, when its faults were taken back, and the end of
its recovery phase."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Window"]


@dataclass(frozen=True)
class Window:
    """One trial's times (monotonic seconds)."""

    fault_start: float
    fault_end: float
    recovery_end: float
    reverted: float | None = None
    """When the trial's last fault was taken back (a fault shorter than its phase is taken back
    before the phase ends); None: at the end of the fault phase."""

    @property
    def revert_at(self) -> float:
        """Where recovery is measured from."""
        return self.fault_end if self.reverted is None else min(self.reverted, self.fault_end)
