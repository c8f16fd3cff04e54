"""One run of an experiment: preflight → system up → warm-up → baseline → (inject → observe →
revert → recover) × trials → verdict → teardown, with the safety valve watching throughout and
every fault journaled before it is applied and reverted on every exit path.

This module puts the steps in order and owns every exit path; each step lives in its own:
``preflight`` (may it run?), ``running`` (the run object), ``system`` (bring-up), ``binding``
(the experiment bound to the live system), ``plan``, ``schedule`` (the phases and trials),
``lifecycle`` (each fault), ``verdict`` and ``result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..drivers.base import DriverError
from ..drivers.registry import Drivers
from ..drivers.toxiproxy import default_url
from ..exitcodes import ExitCode
from ..load import (
    LoadConfigError,
    LoadGenerator,
    ProbeConfigError,
)
from ..model import Experiment
from ..model.result import Judged, RunResult
from ..model.variables import render
from ..safety.policy import Policy
from ..safety.valve import Trip, Valve, window_guard
from . import watchdog
from .binding import bind
from .errors import BringUpError, PreflightError
from .folder import open_run_folder, room_left, write_result
from .fronts import FrontError, fronted_keys, place_fronts
from .groups import GroupTagger
from .hung import write_started
from .journal import JournalError
from .lifecycle import FaultLifecycle, could_not_revert
from .liveview import snapshot
from .looplag import LoopLag
from .plan import check_planned, plan_faults
from .preflight import refuse_unless_allowed
from .probecheck import read_each_once
from .result import outcome_of, result_document
from .running import Run
from .schedule import run_phases
from .steady import SteadyCheck
from .stopping import StopSignals
from .system import bring_up
from .targets import engine_containers, swarm_targets
from .trials import Window
from .verdict import judge_run

__all__ = ["PreflightError", "RunOutcome", "run_experiment"]


@dataclass
class RunOutcome:
    """How a run ended, where its files are, and the exit code for CI."""

    verdict: str
    exit_code: ExitCode
    run_dir: Path
    result: RunResult
    unwritten: str | None = None
    """Why result.json could not be written (a full disk), if it could not."""
    unrecorded: str | None = None
    """Why the journal still names reverted faults (it could not record a revert), if so:
    ``chaoskit rollback`` clears it."""


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
    drivers: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Run ``experiment`` and write ``result.json`` under ``reports/<run id>/``.

    ``drivers``: the driver table (name → ``module:factory``); by default the built-in drivers
    and those plugins add. The watchdog and ``chaoskit rollback`` make drivers from the table
    as installed, so a driver given only here is reverted by this process alone.

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
            source=source, stop_signals=caught, drivers=drivers,
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
    drivers: Mapping[str, str] | None,
) -> RunOutcome:
    refuse_unless_allowed(experiment, policy, reports)
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{experiment.name}-{secrets.token_hex(2)}"
    run_dir, journal = open_run_folder(reports, run_id)
    current = Run(experiment, policy, run_dir, run_id, log=log, journal=journal)
    if follow is not None:
        follow(lambda: snapshot(current))
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
    this_run = {"id": run_id, "dir": str(run_dir)}
    if experiment.safety.kill_switch.file:
        kill_files.append(Path(render(experiment.safety.kill_switch.file, {}, this_run)))
    current.valve = Valve(
        experiment.safety,
        current.watch,
        kill_files=kill_files,
        guards=[dog.guard, lambda: room_left(run_dir), window_guard(policy)],
    )

    def stop_on(name: str) -> None:
        if current.valve is not None:
            current.valve.pull("signal", name)
        current.abort.set()

    if stop_signals is not None:
        stop_signals.connect(lambda name: loop.call_soon_threadsafe(stop_on, name))
    trials: list[Window] = []
    baseline = (0.0, 0.0)
    error: str | None = None
    verdict: Judged | None = None
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
            current.live = live
            kinds = {spec.kind for spec in experiment.targets.values()}
            if "container" in kinds:  # containers the run did not start, too
                live.add_source(partial(engine_containers, live.engines))
            for kind in sorted(kinds & {"service", "node"}):
                live.add_source(partial(swarm_targets, kind, live.engines))
            current.faults = FaultLifecycle(
                Drivers(live.toxiproxy_url or default_url(), table=drivers), journal, log=log
            )
            current.fronts = await place_fronts(experiment, live)
            planned, current.draws = await asyncio.to_thread(
                plan_faults, experiment, policy, live, current.fronts, current.faults
            )
            await check_planned(planned, current.faults)
            try:  # once: ports are known now
                bound = bind(experiment, live.ports, this_run, live.engines)
            except ValueError as unbound:
                raise PreflightError(str(unbound)) from None
            load = bound.load
            if load is None:  # refused at preflight; said again for the type checker
                raise PreflightError("`chaoskit run` needs a load section")
            hit = {t.name for d in current.draws.values() for t in d.experiment}
            control = {t.name for d in current.draws.values() for t in d.control}
            concurrent = bool(
                load.group_header
                and control
                and experiment.blast_radius.control == "concurrent"
                and experiment.hypothesis.comparison != "before_after"
            )
            current.set_concurrent(concurrent)
            current.group_of = GroupTagger(hit, control) if concurrent else None
            generator = LoadGenerator(load, group_of=current.group_of, samples=current.samples)
            samplers = current.samplers(bound)  # a probe that can never work stops us here
            for name, message in (await read_each_once(samplers)).items():
                log(f"probe {name}: no reading yet ({message}); it has until the first fault")
            load_task = asyncio.create_task(generator.run())
            probing = [asyncio.create_task(sampler.run()) for sampler in samplers]
            watcher = asyncio.create_task(current.guard(current.valve))
            try:
                trials, baseline = await run_phases(current, planned)
            finally:  # revert before the system goes down, whatever happened
                watcher.cancel()
                error = could_not_revert(await current.faults.revert())
                generator.stop()
                for sampler in samplers:
                    sampler.stop()
                await asyncio.gather(load_task, *probing, return_exceptions=True)
                failed = None if load_task.cancelled() else load_task.exception()
                if failed is not None and error is None:
                    error = f"the load generator failed: {failed}"
            finished = len(trials) == experiment.hypothesis.trials or (
                bool(trials) and current.stopped is not None
            )
            steady = current.steady is None or current.steady.held
            if error is None and current.valve.tripped is None and finished and steady:
                verdict = judge_run(
                    experiment,
                    current.samples,
                    baseline,
                    trials,
                    concurrent=concurrent,
                    probes=current.probes,
                    sequential=current.sequential.decisions if current.sequential else None,
                    stopped=current.stopped,
                )
    except (PreflightError, BringUpError):
        raise
    except (LoadConfigError, ProbeConfigError, FrontError) as exc:  # before any fault
        raise PreflightError(str(exc)) from None
    except DriverError as exc:
        error = str(exc)
    except JournalError as exc:  # the write-ahead promise cannot be kept: stop, revert
        current.valve.pull("journal", f"{exc}: the run stopped before applying anything more")
    finally:
        if current.faults.applied:
            await current.faults.revert()
        if generator is not None:
            generator.stop()
        if load_task is not None and not load_task.done():
            load_task.cancel()
            with contextlib.suppress(BaseException):
                await load_task
        await current.faults.aclose()
        current.close_samples()
        renewing.cancel()
        lagging.cancel()
        unrecorded = current.faults.unrecorded
        if current.faults.applied or unrecorded:
            journal.release()  # it still names what may be applied: rollback clears it
        else:
            try:
                journal.close()
            except JournalError as exc:
                unrecorded = str(exc)
        if stop_signals is not None:
            stop_signals.disconnect()
        await loop.run_in_executor(None, dog.finish)
    trip: Trip | None = current.valve.tripped if current.valve else None
    before_any_fault = (
        trip is not None and trip.reason == "abort_when" and not current.faults.injected
    )
    if trip is not None and before_any_fault:
        current.steady = SteadyCheck(  # the valve saw the system broken before any fault
            [f"the safety valve's condition was met before any fault: {trip.detail}"]
        )
    outcome, code = outcome_of(trip, error, verdict, current.steady, current.stopped)
    result = result_document(
        current,
        source=source,
        outcome=outcome,
        code=code,
        ports=live_ports,
        trip=trip,
        error=error,
        verdict=verdict,
        event_loop=lag.to_json(),
    ).located(run_dir)
    unwritten = write_result(run_dir, result)
    return RunOutcome(outcome, code, run_dir, result, unwritten, unrecorded)


def _empty_system() -> Any:
    from ..model import System  # noqa: PLC0415

    return System()
