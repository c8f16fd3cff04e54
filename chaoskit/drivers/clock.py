"""The clock driver: ``clock_skew`` on targets started under libfaketime (``launch/faketime.py``).

Injecting a skew rewrites the target's skew file atomically; reverting zeroes it in place.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Self

from ..launch.faketime import write_skew, zero_skew
from ..model import Fault
from ..model.faults import ClockSkewFault
from .base import AppliedFault, DriverConfig, DriverError, Target

__all__ = ["ClockDriver"]


class ClockDriver:
    """Clock skew for targets started under libfaketime: their ``ref`` names the skew file."""

    name = "clock"

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver; skew files need no settings."""
        return cls()

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of a skew; refuses targets that were not started under libfaketime."""
        if not isinstance(fault, ClockSkewFault):
            raise DriverError(f"the clock driver cannot apply a {fault.type} fault")
        skew_file = target.ref.get("faketime")
        if not skew_file:
            where = "system.containers[]" if target.kind == "container" else "system.processes[]"
            raise DriverError(
                f"clock_skew needs {target.name} started under libfaketime: set "
                f"'faketime: true' on it in {where} (or on the stack)"
            )
        if not Path(skew_file).is_file():
            raise DriverError(f"the skew file of {target.name} is missing: {skew_file}")
        seconds = fault.skew.nanoseconds / 1e9
        return AppliedFault(
            self.name,
            "clock_skew",
            target,
            {"file": skew_file, "seconds": seconds},
            {"file": skew_file},
        )

    async def check(self, record: AppliedFault) -> None:
        """The skew file is still there."""
        if not Path(record.params["file"]).is_file():
            raise DriverError(
                f"the skew file of {record.target.name} is missing: {record.params['file']}"
            )

    async def apply(self, record: AppliedFault) -> None:
        """Write the skew."""
        path = Path(record.params["file"])
        if not path.parent.is_dir():
            raise DriverError(f"the skew file's folder is gone: {path.parent}")
        await asyncio.to_thread(write_skew, path, float(record.params["seconds"]))

    async def revert(self, record: AppliedFault) -> None:
        """Zero the skew in place (no free disk needed); nothing to do if the file is gone with
        the target."""
        path = Path(record.undo["file"])
        if path.is_file():
            await asyncio.to_thread(zero_skew, path)

    async def aclose(self) -> None:
        """Nothing is held open."""
