"""The ``loadavg`` probe: this machine's load average, as a steady-state metric."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from chaoskit.load import ProbeReader
from chaoskit.model import Model
from chaoskit.units import Duration


class LoadAverageProbe(Model):
    """The load average over the last 1, 5 or 15 minutes (``/proc/loadavg``)."""

    type: Literal["loadavg"]
    minutes: Literal[1, 5, 15] = 1
    timeout: Duration = Duration.parse("1s")

    def reader(self) -> ProbeReader:
        """The reader chaoskit samples this probe with."""
        return _LoadAverageReader(self)


class _LoadAverageReader(ProbeReader):
    def __init__(self, probe: LoadAverageProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.field = {1: 0, 5: 1, 15: 2}[probe.minutes]

    async def _read(self) -> float:
        return float(Path("/proc/loadavg").read_text().split()[self.field])
