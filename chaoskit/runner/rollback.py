"""Reverting what a journal says is still applied: by the runner on every exit path, by the
watchdog when the runner dies, and by hand with ``chaoskit rollback``."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_before_delay, wait_exponential

from ..drivers.base import AppliedFault, DriverError, Unreachable
from ..drivers.registry import Drivers
from .journal import Journal, JournalError, JournalState, read_journal
from .system import stop_part

__all__ = ["REVERT_PATIENCE", "Outcome", "Rollback", "Stopped", "revert_all", "rollback"]


@dataclass(frozen=True)
class Outcome:
    """What became of one fault's revert."""

    record: AppliedFault
    error: str | None = None
    unrecorded: str | None = None
    """Why the journal could not record this outcome, if it could not."""

    @property
    def ok(self) -> bool:
        """True when the fault is no longer applied."""
        return self.error is None


@dataclass(frozen=True)
class Stopped:
    """A part of the system a crashed run left running, and whether it could be stopped."""

    part: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True)
class Rollback:
    """What a rollback found and did."""

    state: JournalState
    outcomes: list[Outcome]
    stopped: list[Stopped]
    unrecorded: str | None = None
    """Why the journal does not show what was done, if it could not be written."""

    @property
    def ok(self) -> bool:
        """Every fault reverted and every part stopped."""
        return all(o.ok for o in self.outcomes) and all(s.error is None for s in self.stopped)

    def lines(self, *, kinds: bool = False) -> list[str]:
        """One line per fault and part: what it was and whether it was taken back; ``kinds``
        names each target's kind too."""
        said = []
        for outcome in self.outcomes:
            target = outcome.record.target
            name = f"{target.kind} {target.name}" if kinds else target.name
            result = "reverted" if outcome.ok else f"FAILED: {outcome.error}"
            said.append(f"{outcome.record.fault} on {name}: {result}")
        for stopped in self.stopped:
            part = stopped.part
            result = "stopped" if stopped.error is None else f"FAILED: {stopped.error}"
            said.append(f"{part['kind']} {part.get('name') or part.get('id')}: {result}")
        return said


REVERT_PATIENCE = 30.0
"""Seconds a revert keeps trying a backend that does not answer (an engine restarting, a
network that blinked), with backoff, before the fault is left in the journal for a later
``chaoskit rollback``: no attempt starts after it, though one under way may take its own
timeout (an engine's API calls: 30 s)."""


async def _revert(drivers: Drivers, record: AppliedFault, patience: float) -> Outcome:
    tries = 0
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(Unreachable),
        wait=wait_exponential(multiplier=0.25, max=5.0),
        stop=stop_before_delay(patience),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                tries += 1
                await drivers.get(record.driver).revert(record)
    except Unreachable as error:
        return Outcome(
            record,
            f"{error} (tried {tries} time{'s' * (tries != 1)} in {patience:g}s; left in the "
            "journal: `chaoskit rollback` reverts it once it answers)",
        )
    except Exception as error:  # any failure is reported; the other reverts still run
        return Outcome(
            record,
            f"{type(error).__name__}: {error}"
            if not isinstance(error, DriverError)
            else str(error),
        )
    return Outcome(record)


async def revert_all(
    records: list[AppliedFault],
    drivers: Drivers,
    journal: Journal | None = None,
    *,
    patience: float = REVERT_PATIENCE,
) -> list[Outcome]:
    """Revert every record at once (newest first in the result), journaling each outcome; a
    backend that does not answer is tried again for ``patience`` seconds.

    A revert that is done stays done when the journal cannot record it (a full disk): the
    journal then names a fault that is no longer applied, which a later rollback reverts again,
    harmlessly; the outcome's ``unrecorded`` says so.
    """
    ordered = list(reversed(records))
    outcomes = list(
        await asyncio.gather(*(_revert(drivers, record, patience) for record in ordered))
    )
    if journal is not None:
        for i, outcome in enumerate(outcomes):
            try:
                await asyncio.to_thread(journal.reverted, outcome.record, outcome.error)
            except JournalError as error:
                outcomes[i] = dataclasses.replace(outcome, unrecorded=str(error))
    return outcomes


async def rollback(
    path: Path, drivers: Drivers | None = None, *, patience: float = REVERT_PATIENCE
) -> Rollback:
    """Revert every fault the journal at ``path`` says may still be applied, then stop what
    the run started and left running; record each in the journal.

    Reverting does not wait for the journal: when it cannot be written (a full or read-only
    disk), everything is still reverted and stopped, and ``unrecorded`` says why the journal
    does not show it.
    """
    state = read_journal(path)
    if not state.pending and not state.running:
        return Rollback(state, [], [])
    owned = drivers is None
    drivers = drivers or Drivers()
    stopped: list[Stopped] = []
    unrecorded: str | None = None
    journal: Journal | None = None
    try:
        journal = Journal.append_to(path)
    except JournalError as cannot:
        unrecorded = str(cannot)
    try:
        outcomes = (
            await revert_all(state.pending, drivers, journal, patience=patience)
            if state.pending
            else []
        )
        unrecorded = unrecorded or next((o.unrecorded for o in outcomes if o.unrecorded), None)
        for part in reversed(state.running):
            failure = await asyncio.to_thread(stop_part, part)
            if failure is None and journal is not None:
                try:
                    journal.stopped(str(part["key"]))
                except JournalError as failed:
                    unrecorded = unrecorded or str(failed)
            stopped.append(Stopped(part, failure))
    finally:
        if journal is not None:
            journal.release()
        if owned:
            await drivers.aclose()
    return Rollback(state, outcomes, stopped, unrecorded)
