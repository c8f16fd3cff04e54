"""The ``cpu_hog`` fault: what an experiment file may say about it, and how it is applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from chaoskit.model import FaultBase


class CpuHogFault(FaultBase):
    """Run ``workers`` busy processes beside a process target while the fault lasts: a noisy
    neighbour taking CPU from it."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"process"})
    """Declared on process targets only."""
    DRIVERS: ClassVar[Mapping[str, str]] = {"process": "cpu_hog"}
    """Applied by the driver this package registers as ``cpu_hog``."""

    type: Literal["cpu_hog"]
    workers: int = Field(default=1, ge=1, le=64)
    """How many busy processes to run."""
