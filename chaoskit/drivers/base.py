"""What every fault driver promises: a record written before the fault, a revert from it alone.

A driver turns a fault and a concrete target into an :class:`AppliedFault` *before* touching
anything (the runner journals it first), applies it, and can revert it later from the record
alone — in a fresh process, twice, or after the target has gone.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Self

from ..model import Fault
from ..model.faults import DiskFullFault, TargetKind

__all__ = [
    "AppliedFault",
    "DriverConfig",
    "DriverError",
    "FaultDriver",
    "Target",
    "TargetGone",
    "TargetKind",
    "Unreachable",
    "disk_params",
]

JSON = dict[str, Any]


class DriverError(Exception):
    """A driver could not reach its backend or do what was asked; the message says which."""


class Unreachable(DriverError):
    """The backend (a Docker engine, a Toxiproxy server) did not answer. A revert that meets
    it is tried again with backoff, and stays in the journal if it never answers, for a later
    ``chaoskit rollback``."""


class TargetGone(DriverError):
    """The target is not there any more (a process that exited, a container removed): an
    outcome of the run (the system lost it), not a failure of chaoskit."""


@dataclass(frozen=True)
class Target:
    """One concrete thing a fault can hit, and how a driver finds it again."""

    kind: TargetKind
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    ref: JSON = field(default_factory=dict)
    """Driver-specific identity: a pid and its start time, a container id, a proxy's API URL."""

    def to_json(self) -> JSON:
        """Plain JSON."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        """The inverse of :meth:`to_json`."""
        return cls(data["kind"], data["name"], dict(data.get("labels", {})), dict(data["ref"]))


@dataclass(frozen=True)
class AppliedFault:
    """Everything a fresh process needs to revert one fault: plain JSON, journaled first."""

    driver: str
    fault: str
    """The fault's type, e.g. ``pause``."""
    target: Target
    params: JSON
    """What is applied (a signal, a balloon size, a skew)."""
    undo: JSON
    """What the driver's revert needs (a signal to send, a file to remove, a network to rejoin)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    planned_at: float = field(default_factory=time.time)

    def to_json(self) -> JSON:
        """Plain JSON, for the journal."""
        return {
            "id": self.id,
            "driver": self.driver,
            "fault": self.fault,
            "target": self.target.to_json(),
            "params": self.params,
            "undo": self.undo,
            "planned_at": self.planned_at,
        }

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        """The inverse of :meth:`to_json`."""
        return cls(
            driver=data["driver"],
            fault=data["fault"],
            target=Target.from_json(data["target"]),
            params=dict(data["params"]),
            undo=dict(data["undo"]),
            id=data["id"],
            planned_at=float(data["planned_at"]),
        )


@dataclass(frozen=True)
class DriverConfig:
    """What a driver is made with: the run's settings a backend may need."""

    toxiproxy_url: str | None = None
    """The Toxiproxy API for targets whose record names none."""


class FaultDriver(Protocol):
    """Injects faults of some types into targets of some kinds, and takes them back.

    A fault's life through its driver: :meth:`plan` (touches nothing) → :meth:`check` → the
    record is journaled → :meth:`apply` → … → :meth:`revert`, which may run in another process
    with only the record (see ``runner/lifecycle.py``).
    """

    name: str

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of the fault about to be applied; touches nothing."""
        ...

    async def check(self, record: AppliedFault) -> None:
        """Before anything is applied: the backend answers and the fault can be applied and
        taken back as planned; raises :class:`DriverError` (or :class:`TargetGone`) if not."""
        ...

    async def apply(self, record: AppliedFault) -> None:
        """Apply the planned fault."""
        ...

    async def revert(self, record: AppliedFault) -> None:
        """Take the fault back; idempotent, safe after the target has gone."""
        ...

    async def aclose(self) -> None:
        """Close what the driver holds open (clients belong to the event loop that made them)."""
        ...


def disk_params(fault: DiskFullFault, path: str) -> JSON:
    """What a disk_full record carries: the tmpfs, and bytes or percent to leave free."""
    params: JSON = {"path": path}
    if fault.leave is not None:
        params["leave"] = fault.leave.bytes
    if fault.free is not None:
        params["free_percent"] = float(fault.free.percent)
    return params
