"""One run of an experiment: preflight → system up → warm-up → baseline → (inject → observe →
revert → recover) × trials → verdict → teardown, with the safety valve watching throughout and
every fault journaled before it is applied and reverted on every exit path.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..drivers.base import AppliedFault, DriverError, Target, TargetGone
from ..drivers.registry import Drivers
from ..drivers.toxiproxy import default_url
from ..exitcodes import ExitCode
from ..load import (
    LoadConfigError,
    LoadGenerator,
    ProbeConfigError,
    ProbeSampler,
    ProbeSeries,
    RequestSamples,
)
from ..model import Experiment
from ..model.metrics import ProbeMetric
from ..model.variables import render
from ..safety.policy import Policy
from ..safety.valve import Guard, Trip, Valve
from . import watchdog
from .errors import BringUpError, PreflightError
from .folder import open_run_folder, room_left, write_result
from .fronts import FrontError, Fronts, fronted_keys, place_fronts
from .groups import GroupTagger
from .hung import write_started
from .journal import Journal, JournalError, find_stale
from .lifecycle import FaultLifecycle, could_not_revert
from .looplag import LoopLag
from .plan import PlannedFault, check_planned, plan_faults
from .probecheck import read_each_once, unread_probes
from .result import outcome_of, result_document
from .sequential import SequentialWatch
from .steady import SteadyCheck, check_steady
from .stopping import StopSignals
from .system import RunningSystem, bring_up
from .targets import Draw, TargetError, engine_containers
from .trials import Window
from .verdict import judge_run
from .watch import RunWatch

__all__ = ["PreflightError", "RunOutcome", "run_experiment"]

_TICK = 0.1


@dataclass
class RunOutcome:
    """How a run ended, where its files are, and the exit code for CI."""

    verdict: str
    exit_code: ExitCode
    run_dir: Path
    result: dict[str, Any]
    unwritten: str | None = None
    """Why result.json could not be written (a full disk), if it could not."""
    unrecorded: str | None = None
    """Why the journal still names reverted faults (it could not record a revert), if so:
    ``chaoskit rollback`` clears it."""


class _Run:
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

    # -- the phases ------------------------------------------------------------------------------

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

    async def look_each_second(
        self, watch: SequentialWatch, start: float, enough: asyncio.Event
    ) -> None:
        """Feed the sequential tests every second with the requests whose answers are surely
        in (due at least the load's timeout ago); set ``enough`` once they have the answer."""
        timeout = self.exp.load.timeout.seconds if self.exp.load is not None else 0.0
        settled = timeout + 0.1
        fed = start
        while True:
            await asyncio.sleep(1.0)
            upto = time.monotonic() - settled
            if upto > fed:
                if watch.look(fed, upto):
                    enough.set()
                    return
                fed = upto

    def snapshot(self) -> dict[str, Any]:
        """What is happening now, for a live view: phase, time left, metrics, faults, valve."""
        now = time.monotonic()
        current = self.phases[-1] if self.phases else None
        metrics = {}
        for metric in self.exp.steady_state:
            groups = ("experiment", "control") if self.concurrent else ("all",)
            metrics[metric.name] = {g: self.watch.value(metric, g, now) for g in groups}
        trip = self.valve.tripped if self.valve else None
        return {
            "run": self.run_id,
            "phase": current["phase"] if current else "starting",
            "trial": current.get("trial") if current else None,
            "left": max(0.0, current["end"] - now) if current else None,
            "metrics": metrics,
            "faults": [
                f"{r.fault} on {r.target.kind} {r.target.name}"
                for r in self.faults.applied.values()
            ],
            "valve": f"tripped: {trip.detail}" if trip is not None else self.valve_state(now),
            "probe_errors": {
                name: series.errors[len(series) - 1]
                for name, series in self.probes.items()
                if len(series) and len(series) - 1 in series.errors
            },
        }

    def valve_state(self, now: float) -> str:
        """'armed', or the breaches under way and how long each must still last."""
        records = self.valve.records if self.valve is not None else []
        breaching = [
            f"{r.condition.metric} beyond {r.condition.limit} for {now - r.since:.1f}s of "
            f"{r.condition.for_}"
            for r in records
            if r.since is not None
        ]
        return "armed" if not breaching else "armed; breached: " + "; ".join(breaching)

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

    async def trial(self, number: int, planned: list[PlannedFault]) -> Window | None:
        phases = self.exp.phases
        start = time.monotonic()
        end = start + phases.fault.nanoseconds / 1e9
        self.phase("fault", start, end, number)
        events_before = len(self.faults.events)
        timeline = sorted(
            [(p.start, "inject", p) for p in planned] + [(p.end, "revert", p) for p in planned],
            key=lambda item: (item[0], item[1] == "inject"),
        )
        current: dict[tuple[str, str], Target] = {}
        if self.live is not None:
            with contextlib.suppress(TargetError):  # no listing now: the planned targets do
                listed = await asyncio.to_thread(self.live.targets)
                current = {(t.kind, t.name): t for t in listed}
        live: dict[int, list[AppliedFault]] = {}
        enough = asyncio.Event()  # the sequential tests have the answer: end the phase now
        watch = self.sequential
        looking = (
            asyncio.create_task(self.look_each_second(watch, start, enough))
            if watch is not None and watch.active
            else None
        )
        try:
            untripped = await self._timeline(
                start, end, timeline, live=live, current=current, enough=enough
            )  # fmt: skip
            if not untripped:
                return None
        finally:
            if looking is not None:
                looking.cancel()
        if enough.is_set():
            end = time.monotonic()
            self.phases[-1]["end"] = end
            why = "a target is gone" if self.gone else "the sequential tests have the answer"
            self.log(f"{why}: fault phase over at {end - start:.0f}s")
            await self.revert([r for rs in live.values() for r in rs])
        if self.gone:
            applied = any(e["event"] == "inject" for e in self.faults.events[events_before:])
            self.stopped = (
                f"no trial after trial {number}: {'; '.join(self.gone)}"
                if applied
                else f"trial {number} was not run: {'; '.join(self.gone)}"
            )
            if not applied:
                return None
        recovery_end = end + phases.recovery.nanoseconds / 1e9
        self.phase("recovery", end, recovery_end, number)
        if not await self.wait_until(recovery_end):
            return None
        reverts = [e["at"] for e in self.faults.events[events_before:] if e["event"] == "revert"]
        return Window(start, end, recovery_end, max(reverts) if reverts else None)

    async def _timeline(
        self,
        start: float,
        end: float,
        timeline: list[tuple[float, str, PlannedFault]],
        *,
        live: dict[int, list[AppliedFault]],
        current: dict[tuple[str, str], Target],
        enough: asyncio.Event,
    ) -> bool:
        """Inject and revert on schedule until the phase's end (or ``enough``); False if the
        valve tripped."""
        for offset, action, item in timeline:
            if not await self.wait_until(start + offset, enough):
                return False
            if enough.is_set():
                return True
            if action == "inject":
                live[item.index] = []
                for planned in item.records:
                    target = current.get((planned.target.kind, planned.target.name))
                    try:
                        record = self.faults.plan(item.fault, target or planned.target)
                        live[item.index].append(record)
                        await self.faults.inject(record)
                    except TargetGone as gone:  # the system lost it: end the phase, say so
                        self.target_gone(gone)
                        enough.set()
                if enough.is_set():
                    return True
            else:
                await self.revert(live[item.index])
        return await self.wait_until(end, enough)

    async def guard(self, valve: Valve) -> None:
        """Check ``valve`` every tick until it trips (then stop every phase)."""
        while not self.abort.is_set():
            trip = valve.check()
            if trip is not None:
                self.log(f"safety valve tripped: {trip.detail}")
                self.abort.set()
                return
            await asyncio.sleep(_TICK)

    def set_concurrent(self, concurrent: bool) -> None:
        """Fix the comparison once the draw is known: with a concurrent control, a request
        nobody can attribute (no answer, no group header) counts against the experiment."""
        self.concurrent = concurrent
        self.watch.concurrent = concurrent
        self.samples.fallback_group = "experiment" if concurrent else None

    def back_to_steady(self, last: Window, number: int) -> bool:
        """Before trial ``number``: is the system back in its steady state at the end of the
        last trial's recovery (its declared limits and abort thresholds, most requests)? If
        not, no further fault is injected and the run says why."""
        span = min(last.recovery_end - last.revert_at, self.exp.recovery_hold().seconds or 1.0)
        check = check_steady(
            self.exp, self.samples, self.probes, (last.recovery_end - span, last.recovery_end),
            now=time.monotonic(), drift=False,
        )  # fmt: skip
        if check.held:
            return True
        self.stopped = (
            f"trial {number} was not run: the system was not back in its steady state at the end "
            f"of trial {number - 1}'s recovery ({'; '.join(check.problems)})"
        )
        self.log(self.stopped)
        return False

    def target_gone(self, gone: TargetGone) -> None:
        """A target the fault was meant for is not there any more: no further fault is
        applied, and the run says so."""
        self.gone.append(str(gone))
        self.faults.gone(gone)

    def samplers(self, ports: dict[str, int]) -> list[ProbeSampler]:
        """A sampler per probe metric, its templates filled in for this run."""
        run = {"id": self.run_id, "dir": str(self.run_dir)}
        found = []
        for metric in self.exp.steady_state:
            if isinstance(metric, ProbeMetric):
                probe = type(metric.probe).model_validate(
                    _rendered(metric.probe.model_dump(mode="json"), ports, run)
                )
                sampler = ProbeSampler(probe, metric.interval, name=metric.name)
                self.probes[metric.name] = sampler.series
                found.append(sampler)
        return found


async def run_experiment(
    experiment: Experiment,
    *,
    policy: Policy,
    reports: Path = Path("reports"),
    log: Callable[[str], None] = print,
    follow: Callable[[Callable[[], dict[str, Any]]], None] | None = None,
    run_id: str | None = None,
    source: Path | None = None,
    stop_signals: StopSignals | None = None,
) -> RunOutcome:
    """Run ``experiment`` and write ``result.json`` under ``reports/<run id>/``.

    ``source``, the file the experiment was loaded from, is kept in the result as written.

    ``log`` gets a line per event; ``follow``, if given, gets a function that describes the
    run as it is now (for a live view).

    ``stop_signals``: the caller's catcher of SIGINT/SIGTERM/SIGHUP, which stays in force after
    the run (while its reports are written); without one, and unless the experiment sets
    ``kill_switch.signals: false``, the run catches them itself while it lasts.
    """
    catch_here = stop_signals is None and experiment.safety.kill_switch.signals
    with StopSignals() if catch_here else contextlib.nullcontext(stop_signals) as caught:
        return await _run(
            experiment, policy=policy, reports=reports, log=log, follow=follow, run_id=run_id,
            source=source, stop_signals=caught,
        )  # fmt: skip


async def _run(
    experiment: Experiment,
    *,
    policy: Policy,
    reports: Path,
    log: Callable[[str], None],
    follow: Callable[[Callable[[], dict[str, Any]]], None] | None,
    run_id: str | None,
    source: Path | None,
    stop_signals: StopSignals | None,
) -> RunOutcome:
    violations = policy.check_now(experiment)  # the windows and blackouts too, by the clock
    if violations:
        raise PreflightError(
            "the site policy refuses this experiment: " + "; ".join(map(str, violations))
        )
    stale = find_stale(reports)
    if stale:
        names = "; ".join(f"{s.path} ({s.trouble()})" for s in stale)
        raise PreflightError(
            f"an earlier run left something behind ({names}): run `chaoskit rollback` first"
        )
    if experiment.load is None:
        raise PreflightError("`chaoskit run` needs a load section to measure the steady state")
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{experiment.name}-{secrets.token_hex(2)}"
    run_dir, journal = open_run_folder(reports, run_id)
    state = _Run(experiment, policy, run_dir, run_id, log=log, journal=journal)
    if follow is not None:
        follow(state.snapshot)
    try:
        write_started(run_dir, run_id, experiment, source)
        dog = watchdog.start(journal.path, timeout=experiment.safety.watchdog_lease.seconds)
    except OSError as exc:
        journal.close()
        raise PreflightError(f"cannot record the run's start or its watchdog: {exc}") from None
    renewing = asyncio.create_task(dog.keep_renewing())
    lag = LoopLag()
    lagging = asyncio.create_task(lag.run())
    loop = asyncio.get_running_loop()
    kill_files = [run_dir / "HALT"]  # `chaoskit halt` works whatever the experiment declares
    if experiment.safety.kill_switch.file:
        run = {"id": run_id, "dir": str(run_dir)}
        kill_files.append(Path(render(experiment.safety.kill_switch.file, {}, run)))
    state.valve = Valve(
        experiment.safety,
        state.watch,
        kill_files=kill_files,
        guards=[dog.guard, lambda: room_left(run_dir), window_guard(policy)],
    )

    def stop_on(name: str) -> None:
        if state.valve is not None:
            state.valve.pull("signal", name)
        state.abort.set()

    if stop_signals is not None:
        stop_signals.connect(lambda name: loop.call_soon_threadsafe(stop_on, name))
    trials: list[Window] = []
    baseline = (0.0, 0.0)
    error: str | None = None
    verdict: dict[str, Any] | None = None
    concurrent = False
    load_task: asyncio.Task[Any] | None = None
    generator: LoadGenerator | None = None
    unrecorded: str | None = None
    live_ports: dict[str, int] = {}
    try:
        async with bring_up(
            experiment.system or _empty_system(),
            run_id,
            run_dir,
            on_start=journal.started,
            on_stop=journal.stopped,
            front_proxy=bool(fronted_keys(experiment)),
        ) as live:
            live_ports = dict(live.ports)
            state.live = live
            if any(spec.kind == "container" for spec in experiment.targets.values()):
                live.add_source(engine_containers)  # containers the run did not start, too
            state.faults = FaultLifecycle(
                Drivers(live.toxiproxy_url or default_url()), journal, log=log
            )
            state.fronts = await place_fronts(experiment, live)
            planned, state.draws = await asyncio.to_thread(
                plan_faults, experiment, policy, live, state.fronts, state.faults
            )
            await check_planned(planned, state.faults)
            load = experiment.load.model_copy(
                update={
                    "url": render(
                        experiment.load.url, live.ports, {"id": run_id, "dir": str(run_dir)}
                    )
                }
            )
            hit = {t.name for d in state.draws.values() for t in d.experiment}
            control = {t.name for d in state.draws.values() for t in d.control}
            concurrent = bool(
                load.group_header
                and control
                and experiment.blast_radius.control == "concurrent"
                and experiment.hypothesis.comparison != "before_after"
            )
            state.set_concurrent(concurrent)
            state.group_of = GroupTagger(hit, control) if concurrent else None
            generator = LoadGenerator(load, group_of=state.group_of, samples=state.samples)
            samplers = state.samplers(live.ports)  # a probe that can never work stops us here
            for name, message in (await read_each_once(samplers)).items():
                log(f"probe {name}: no reading yet ({message}); it has until the first fault")
            load_task = asyncio.create_task(generator.run())
            probing = [asyncio.create_task(sampler.run()) for sampler in samplers]
            watcher = asyncio.create_task(state.guard(state.valve))
            try:
                trials, baseline = await _phases(state, planned)
            finally:  # revert before the system goes down, whatever happened
                watcher.cancel()
                error = could_not_revert(await state.faults.revert())
                generator.stop()
                for sampler in samplers:
                    sampler.stop()
                await asyncio.gather(load_task, *probing, return_exceptions=True)
                failed = None if load_task.cancelled() else load_task.exception()
                if failed is not None and error is None:
                    error = f"the load generator failed: {failed}"
            finished = len(trials) == experiment.hypothesis.trials or (
                bool(trials) and state.stopped is not None
            )
            steady = state.steady is None or state.steady.held
            if error is None and state.valve.tripped is None and finished and steady:
                verdict = judge_run(
                    experiment,
                    state.samples,
                    baseline,
                    trials,
                    concurrent=concurrent,
                    probes=state.probes,
                    sequential=state.sequential.decisions if state.sequential else None,
                    stopped=state.stopped,
                )
    except (PreflightError, BringUpError):
        raise
    except (LoadConfigError, ProbeConfigError, FrontError) as exc:  # before any fault
        raise PreflightError(str(exc)) from None
    except DriverError as exc:
        error = str(exc)
    except JournalError as exc:  # the write-ahead promise cannot be kept: stop, revert
        state.valve.pull("journal", f"{exc}: the run stopped before applying anything more")
    finally:
        if state.faults.applied:
            await state.faults.revert()
        if generator is not None:
            generator.stop()
        if load_task is not None and not load_task.done():
            load_task.cancel()
            with contextlib.suppress(BaseException):
                await load_task
        await state.faults.aclose()
        renewing.cancel()
        lagging.cancel()
        unrecorded = state.faults.unrecorded
        if state.faults.applied or unrecorded:
            journal.release()  # it still names what may be applied: rollback clears it
        else:
            try:
                journal.close()
            except JournalError as exc:
                unrecorded = str(exc)
        if stop_signals is not None:
            stop_signals.disconnect()
        await loop.run_in_executor(None, dog.finish)
    trip: Trip | None = state.valve.tripped if state.valve else None
    before_any_fault = (
        trip is not None and trip.reason == "abort_when" and not state.faults.injected
    )
    if trip is not None and before_any_fault:
        state.steady = SteadyCheck(  # the valve saw the system broken before any fault
            [f"the safety valve's condition was met before any fault: {trip.detail}"]
        )
    outcome, code = outcome_of(trip, error, verdict, state.steady, state.stopped)
    result = result_document(
        run_id=run_id,
        experiment=experiment,
        source=source,
        outcome=outcome,
        code=code,
        ports=live_ports,
        draws=state.draws,
        fronts=state.fronts,
        sequential=state.sequential,
        phases=state.phases,
        events=state.faults.events,
        trip=trip,
        valve=state.valve,
        steady=state.steady,
        error=error,
        verdict=verdict,
        stopped=state.stopped,
        samples=state.samples,
        probes=state.probes,
        event_loop=lag.to_json(),
    )
    unwritten = write_result(run_dir, result)
    return RunOutcome(outcome, code, run_dir, result, unwritten, unrecorded)


async def _phases(
    state: _Run, planned: list[PlannedFault]
) -> tuple[list[Window], tuple[float, float]]:
    """Warm-up, baseline, then the trials; stops early when the valve trips."""
    phases = state.exp.phases
    trials: list[Window] = []
    now = time.monotonic()
    warm_end = now + phases.warmup.nanoseconds / 1e9
    state.phase("warmup", now, warm_end)
    baseline = (warm_end, warm_end + phases.baseline.nanoseconds / 1e9)
    if not await state.wait_until(warm_end):
        return trials, baseline
    state.phase("baseline", *baseline)
    if not await state.wait_until(baseline[1]):
        return trials, baseline
    if state.group_of is not None and state.exp.load is not None:
        header = state.exp.load.group_header or ""
        state.group_of.check(state.samples, baseline, header)
    state.steady = check_steady(
        state.exp, state.samples, state.probes, baseline, now=time.monotonic()
    )
    if not state.steady.held:  # a system broken before any fault: that is the finding
        for problem in state.steady.problems:
            state.log(f"not steady before any fault: {problem}")
        state.log("no fault was applied")
        return trials, baseline
    unread = unread_probes(state.probes)  # the system answers, its probe does not: the probe
    if unread is not None:
        raise PreflightError(unread)
    if state.exp.hypothesis.sequential:
        state.sequential = SequentialWatch(
            state.exp, state.samples, baseline, concurrent=state.concurrent
        )
    for number in range(1, state.exp.hypothesis.trials + 1):
        if trials and not state.back_to_steady(trials[-1], number):
            break
        window = await state.trial(number, planned)
        if window is None:
            break
        trials.append(window)
    return trials, baseline


def window_guard(policy: Policy) -> Guard:
    """A valve guard: the run stops when the site policy's time window closes (or a blackout
    date begins) while it lasts, as it would not have started then."""
    closes = policy.open_until(datetime.now(UTC))

    def closed() -> tuple[str, str] | None:
        if closes is None or datetime.now(UTC) < closes:
            return None
        return "window", (
            f"the site policy allows experiments until {closes:%Y-%m-%d %H:%M:%S} UTC "
            "(its windows and blackouts)"
        )

    return closed


def _rendered(value: Any, ports: dict[str, int], run: dict[str, str]) -> Any:
    """Every string in a plain JSON value with its run-time placeholders filled in."""
    if isinstance(value, str):
        return render(value, ports, run)
    if isinstance(value, list):
        return [_rendered(v, ports, run) for v in value]
    if isinstance(value, dict):
        return {k: _rendered(v, ports, run) for k, v in value.items()}
    return value


def _empty_system() -> Any:
    from ..model import System  # noqa: PLC0415

    return System()
