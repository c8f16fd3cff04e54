"""A fault's life, written once: plan → check → journal → apply → journal → … → revert → journal.

``chaoskit run`` (and so every game day) and the pytest fixtures apply and take back every
fault through :class:`FaultLifecycle`. Each fault is journaled *before* it is applied, so a
runner killed at any moment leaves a record from which a fresh process (the watchdog,
``chaoskit rollback``) reverts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..drivers.base import AppliedFault, DriverError, Target, TargetGone
from ..drivers.registry import Drivers
from ..model import Fault
from .journal import Journal
from .rollback import REVERT_PATIENCE, Outcome, revert_all

__all__ = ["FaultLifecycle", "could_not_revert"]


def _quiet(line: str) -> None:
    """Say nothing."""


def could_not_revert(outcomes: Iterable[Outcome]) -> str | None:
    """``could not revert: …`` naming each failed revert, or None when all were taken back."""
    failed = [f"{o.record.fault} on {o.record.target.name}: {o.error}" for o in outcomes if o.error]
    return "could not revert: " + "; ".join(failed) if failed else None


class FaultLifecycle:
    """Applies faults and takes them back, each step journaled, and remembers what is applied.

    ``journal`` is None only where nothing outlives the caller (a pytest session without a
    journal). ``events`` is the run's record of injections, reverts and targets found gone.
    ``patience`` is how long a revert keeps trying a backend that does not answer.
    """

    def __init__(
        self,
        drivers: Drivers,
        journal: Journal | None = None,
        *,
        log: Callable[[str], None] = _quiet,
        patience: float = REVERT_PATIENCE,
    ) -> None:
        self.drivers = drivers
        self.journal = journal
        self.log = log
        self.patience = patience
        self.applied: dict[str, AppliedFault] = {}
        """What may be applied now, by record id: injected (or being injected), not reverted."""
        self.events: list[dict[str, Any]] = []
        self.unrecorded: str | None = None
        """Why the journal could not record a revert, if it could not (a full disk)."""

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on ``target`` by the driver the fault names for the target's
        kind (a fault ``on_proxy`` is planned on its proxy); touches nothing."""
        name = fault.driver(target.kind)
        if name is None:
            raise DriverError(f"no driver applies a {fault.type} fault to a {target.kind} target")
        return self.drivers.get(name).plan(fault, target)

    async def check(self, records: Iterable[AppliedFault]) -> None:
        """Every backend answers and each fault can be applied and taken back as planned;
        raises :class:`DriverError` naming the first that cannot. Applies nothing."""
        for record in records:
            await self.drivers.get(record.driver).check(record)

    async def inject(self, record: AppliedFault) -> None:
        """Journal ``record``, apply it, journal that it is applied.

        From the first journal line on, the record counts as applied, so that a failure while
        applying (a fault half in place) is reverted too. Journal writes (an fsync each) run in
        a thread: the event loop keeps the load's send times while the disk is slow.
        """
        if self.journal is not None:
            await asyncio.to_thread(self.journal.injecting, record)
        self.applied[record.id] = record
        started, wall = time.monotonic(), time.time()  # together: the result maps one to the other
        await self.drivers.get(record.driver).apply(record)
        if self.journal is not None:
            await asyncio.to_thread(self.journal.applied, record)
        self.events.append(
            {"event": "inject", "id": record.id, "fault": record.fault,
             "target": record.target.name, "at": started, "wall": wall,
             "applied_after": time.monotonic() - started}
        )  # fmt: skip
        self.log(f"injected {record.fault} on {record.target.kind} {record.target.name}")

    async def revert(self, records: Iterable[AppliedFault] | None = None) -> list[Outcome]:
        """Take back those of ``records`` that are applied (by default all that are), at once,
        each outcome journaled; a fault whose revert failed stays applied."""
        chosen = list(self.applied.values()) if records is None else list(records)
        chosen = [r for r in chosen if r.id in self.applied]
        if not chosen:
            return []
        outcomes = await revert_all(chosen, self.drivers, self.journal, patience=self.patience)
        for outcome in outcomes:
            record = outcome.record
            self.unrecorded = self.unrecorded or outcome.unrecorded
            self.events.append(
                {"event": "revert", "id": record.id, "ok": outcome.ok, "error": outcome.error,
                 "at": time.monotonic(), "wall": time.time()}
            )  # fmt: skip
            if outcome.ok:
                del self.applied[record.id]
                self.log(f"reverted {record.fault} on {record.target.kind} {record.target.name}")
        return outcomes

    def gone(self, gone: TargetGone) -> None:
        """Record that a target a fault was meant for is not there any more."""
        self.events.append(
            {"event": "gone", "detail": str(gone), "at": time.monotonic(), "wall": time.time()}
        )
        self.log(f"target gone: {gone}")

    @property
    def injected(self) -> bool:
        """Whether any fault was applied so far."""
        return any(e["event"] == "inject" for e in self.events)

    async def aclose(self) -> None:
        """Close the drivers' connections (they belong to this event loop; the next fault
        makes them afresh)."""
        await self.drivers.aclose()
