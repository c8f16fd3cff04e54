"""``chaoskit gameday schedule``: a long-running scheduler that runs a plan at each cron slot.

Every slot is claimed in a state file (written and flushed) before its game day starts, so a
scheduler restarted mid-slot, or started twice, never runs that slot again; a lock on the state
file keeps a second scheduler of the same plan from running at all. A slot is still run if the
scheduler comes up within ``grace`` after it and nobody claimed it.

The scheduler serves until a stop signal (SIGINT, SIGTERM, SIGHUP: see ``StopSignals``). One
between slots ends it at once. One during a slot stops that slot's game day (its experiment
running then stops as ``chaoskit run`` stops, and no other starts): the slot is recorded as
stopped, and the scheduler ends instead of waiting for the next slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from cronsim import CronSim

from ..model.gameday import GameDayPlan
from ..runner.stopping import StopSignals

__all__ = ["Scheduler", "SchedulerBusy", "next_slot", "state_path"]


class SchedulerBusy(Exception):
    """Another scheduler already holds this plan's state file."""


def state_path(reports: Path, plan: GameDayPlan) -> Path:
    """Where a plan's slots are recorded."""
    return reports / "gamedays" / f"{plan.name}.json"


def next_slot(plan: GameDayPlan, after: datetime) -> datetime | None:
    """The first slot strictly after ``after`` (None: the plan has no schedule)."""
    if plan.schedule is None:
        return None
    return next(CronSim(plan.schedule.cron, after.astimezone(plan.zone())))


def _latest_slot(plan: GameDayPlan, now: datetime) -> datetime | None:
    """The last slot at or before ``now`` (None: the plan has no schedule, or no slot yet)."""
    if plan.schedule is None:
        return None
    start = now.astimezone(plan.zone()) + timedelta(seconds=1)
    return next(CronSim(plan.schedule.cron, start, reverse=True), None)


class Scheduler:
    """Runs ``run(slot)`` for each due slot of ``plan``, recording each in ``state``."""

    def __init__(
        self,
        plan: GameDayPlan,
        state: Path,
        run: Callable[[datetime], Awaitable[str]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        grace: timedelta = timedelta(minutes=5),
        log: Callable[[str], None] = print,
    ) -> None:
        if plan.schedule is None:
            raise ValueError(f"plan '{plan.name}' has no schedule")
        self.plan = plan
        self.state = state
        self._run = run
        self._clock = clock
        self._grace = grace
        self._log = log
        self.stopped: str | None = None
        """The slot a stop signal cut short (its ISO time), once one did."""

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        with (self.state.parent / f".{self.state.name}.lock").open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SchedulerBusy(
                    f"another scheduler of plan '{self.plan.name}' is running ({self.state})"
                ) from None
            yield lock

    def slots(self) -> dict[str, dict[str, Any]]:
        """Every slot recorded so far, by its ISO time."""
        try:
            recorded: dict[str, dict[str, Any]] = json.loads(self.state.read_text())["slots"]
        except FileNotFoundError:
            return {}
        return recorded

    def _record(self, slot: datetime, entry: dict[str, Any]) -> None:
        slots = self.slots()
        slots[slot.isoformat()] = entry
        self.state.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state.with_suffix(".tmp")
        with temporary.open("w") as out:
            json.dump({"plan": self.plan.name, "slots": slots}, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.state)

    async def run_due(self, stop_signals: StopSignals | None = None) -> str | None:
        """Run the latest slot if it is due (within grace) and unclaimed; what happened.

        A slot during which ``stop_signals`` caught its first signal is recorded as stopped
        (by that signal), not done."""
        now = self._clock()
        slot = _latest_slot(self.plan, now)
        if slot is None or now - slot > self._grace:
            return None
        key = slot.isoformat()
        if key in self.slots():
            return None  # claimed before: run (or started) once, never again
        refusals = self.plan.refusals(slot)
        if refusals:
            self._record(slot, {"state": "skipped", "why": "; ".join(refusals)})
            self._log(f"slot {key} skipped: {'; '.join(refusals)}")
            return "skipped"
        self._record(slot, {"state": "started", "at": now.isoformat()})
        self._log(f"slot {key}: game day {self.plan.name} starts")
        outcome = await self._run(slot)
        signal = stop_signals.first if stop_signals is not None else None
        if signal is not None:
            self._record(slot, {"state": "stopped", "at": now.isoformat(), "outcome": outcome,
                                "by": signal})  # fmt: skip
            self._log(f"slot {key}: game day {self.plan.name} stopped by {signal} ({outcome})")
            self.stopped = key
        else:
            self._record(slot, {"state": "done", "at": now.isoformat(), "outcome": outcome})
        return outcome

    async def serve(self, stop_signals: StopSignals) -> str | None:
        """Run each slot as it comes until ``stop_signals`` catches a signal; holds the plan's
        lock throughout. The slot the signal stopped (its ISO time), if it came during one."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        with self._locked():
            while stop_signals.first is None:
                await self.run_due(stop_signals)
                if stop_signals.first is not None:
                    break
                # Again after each slot: the runs of its day took the signals over, and a
                # signal that came in between wakes the wait at once.
                stop_signals.connect(lambda _: loop.call_soon_threadsafe(wake.set))
                upcoming = next_slot(self.plan, self._clock())
                if upcoming is None:
                    self._log(f"{self.plan.name} has no schedule: no slot to wait for")
                    break
                self._log(f"next slot of {self.plan.name}: {upcoming.isoformat()}")
                wait = (upcoming - self._clock()).total_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(wait, 0.0) + 0.5)
        return self.stopped
