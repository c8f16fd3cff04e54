"""The ``cpu_hog`` driver: starts busy processes, and takes them back from the record alone.

Each busy process carries the fault's record id in its command line, so any process (the
watchdog after the runner was SIGKILLed, ``chaoskit rollback``) finds and stops them with no
other state: the revert a fresh process can do, as every chaoskit driver must.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

from chaoskit.drivers.base import AppliedFault, DriverConfig, DriverError, Target
from chaoskit.model import Fault

from .fault import CpuHogFault

_MARK = "chaoskit-cpu-hog"
_BUSY = "import sys\nwhile True:\n    pass\n"


def hogs(record_id: str, proc: Path = Path("/proc")) -> list[int]:
    """The pids of the busy processes started for the record ``record_id``."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if _MARK.encode() in argv and record_id.encode() in argv:
            found.append(int(entry.name))
    return found


class CpuHogDriver:
    """Applies ``cpu_hog`` faults on this machine."""

    name = "cpu_hog"

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver; it needs none of the run's settings."""
        return cls()

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record: how many workers; its id marks them. Touches nothing."""
        if not isinstance(fault, CpuHogFault):
            raise DriverError(f"the cpu_hog driver cannot apply a {fault.type} fault")
        return AppliedFault(self.name, "cpu_hog", target, {"workers": fault.workers}, {})

    async def check(self, record: AppliedFault) -> None:
        """Nothing to reach: this machine runs the workers."""

    async def apply(self, record: AppliedFault) -> None:
        """Start the workers, each in its own session (they outlive a killed runner until
        the revert stops them)."""
        for _ in range(int(record.params["workers"])):
            subprocess.Popen(
                [sys.executable, "-c", _BUSY, _MARK, record.id],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    async def revert(self, record: AppliedFault) -> None:
        """Stop every worker of this record; nothing to do when none runs."""
        for pid in await asyncio.to_thread(hogs, record.id):
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # a killed process leaves /proc once it is a zombie: await that
            left = await asyncio.to_thread(hogs, record.id)
            if not left:
                return
            await asyncio.sleep(0.05)
        raise DriverError(f"cpu_hog workers {left} still run 5 s after SIGKILL")

    async def aclose(self) -> None:
        """Nothing is held open."""
