"""One run in progress, as an object: what it owns and what it has found so far."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..drivers.base import AppliedFault, DriverError, TargetGone
from ..drivers.registry import Drivers
from ..load import ProbeSampler, ProbeSeries, RequestSamples
from ..model import Experiment
from ..model.metrics import ProbeMetric
from ..safety.policy import Policy
from ..safety.valve import Valve
from .fronts import Fronts
from .groups import GroupTagger
from .journal import Journal
from .lifecycle import FaultLifecycle, could_not_revert
from .sequential import SequentialWatch
from .steady import SteadyCheck
from .system import RunningSystem
from .targets import Draw
from .watch import RunWatch

__all__ = ["REQUESTS_FILE", "TICK", "Run"]

TICK = 0.1
"""Seconds between two looks at the valve."""

REQUESTS_FILE = "requests.arrow"
"""Every request of the run, in the run's folder (each probe's readings: probe-<name>.arrow)."""


class Run:
    """One run in progress: what it owns (its journal, the fault lifecycle with its drivers,
    the valve, the samples and probe readings) and what it has found so far. The phase schedule
    (``schedule.py``) drives it; ``run.py`` makes it, brings the system up and judges."""

    def __init__(
        self,
        experiment: Experiment,
        policy: Policy,
        run_dir: Path,
        run_id: str,
        *,
        log: Callable[[str], None],
        journal: Journal,
    ) -> None:
        self.exp = experiment
        self.policy = policy
        self.run_dir = run_dir
        self.run_id = run_id
        self.log = log
        self.journal = journal
        self.faults = FaultLifecycle(Drivers(), journal, log=log)
        """Replaced once the system is up and its Toxiproxy API is known."""
        self.phases: list[dict[str, Any]] = []
        self.draws: dict[str, Draw] = {}
        self.abort = asyncio.Event()
        self.valve: Valve | None = None
        self.samples = RequestSamples()
        self.samples.stream_to(run_dir / REQUESTS_FILE)
        self.probes: dict[str, ProbeSeries] = {}
        self.watch = RunWatch(experiment, self.samples, self.probes)
        self.steady: SteadyCheck | None = None
        self.stopped: str | None = None
        self.group_of: GroupTagger | None = None
        self.concurrent = False
        self.live: RunningSystem | None = None
        self.fronts = Fronts()
        self.sequential: SequentialWatch | None = None
        self.gone: list[str] = []
        """Targets found gone when a fault was to be applied (the system lost them)."""

    async def wait_until(self, deadline: float, also: asyncio.Event | None = None) -> bool:
        """Sleep until ``deadline`` (monotonic) or until ``also`` is set; False if the valve
        tripped first."""
        remaining = deadline - time.monotonic()
        if remaining > 0 and not (also is not None and also.is_set()):
            events = [self.abort] if also is None else [self.abort, also]
            waiters = [asyncio.ensure_future(event.wait()) for event in events]
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        return not self.abort.is_set()

    def phase(self, name: str, start: float, end: float, trial: int | None = None) -> None:
        entry: dict[str, Any] = {"phase": name, "start": start, "end": end, "wall": time.time()}
        if trial is not None:
            entry["trial"] = trial
        self.phases.append(entry)
        self.log(f"{name}{'' if trial is None else f' (trial {trial})'}: {end - start:.0f}s")

    async def revert(self, records: list[AppliedFault]) -> None:
        """Take ``records`` back now; raises :class:`DriverError` if any stays applied."""
        failed = could_not_revert(await self.faults.revert(records))
        if failed:
            raise DriverError(failed)

    async def guard(self, valve: Valve) -> None:
        """Check ``valve`` every tick until it trips (then stop every phase)."""
        while not self.abort.is_set():
            trip = valve.check()
            if trip is not None:
                self.log(f"safety valve tripped: {trip.detail}")
                self.abort.set()
                return
            await asyncio.sleep(TICK)

    def set_concurrent(self, concurrent: bool) -> None:
        """Fix the comparison once the draw is known: with a concurrent control, a request
        nobody can attribute (no answer, no group header) counts against the experiment."""
        self.concurrent = concurrent
        self.watch.concurrent = concurrent
        self.samples.fallback_group = "experiment" if concurrent else None

    def target_gone(self, gone: TargetGone) -> None:
        """A target the fault was meant for is not there any more: no further fault is
        applied, and the run says so."""
        self.gone.append(str(gone))
        self.faults.gone(gone)

    def samplers(self, bound: Experiment) -> list[ProbeSampler]:
        """A sampler per probe metric of ``bound`` (the experiment bound to the live system:
        its probes' placeholders filled in)."""
        found = []
        for metric in bound.steady_state:
            if isinstance(metric, ProbeMetric):
                sampler = ProbeSampler(metric.probe, metric.interval, name=metric.name)
                sampler.series.stream_to(self.run_dir / f"probe-{metric.name}.arrow")
                self.probes[metric.name] = sampler.series
                found.append(sampler)
        return found

    def close_samples(self) -> None:
        """Write the rest of the requests and probe readings to their files and finish them
        (what could not be written is said in the result)."""
        self.samples.close()
        for series in self.probes.values():
            series.close()
