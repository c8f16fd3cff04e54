"""The phase schedule of a run: warm-up, baseline, the steady-state check, then each trial
(inject on schedule, the fault phase with its sequential looks, revert, recovery), stopping as
soon as the valve trips, a target is gone, or the system is not back in its steady state."""

from __future__ import annotations

import asyncio
import contextlib
import time

from ..drivers.base import AppliedFault, Target, TargetGone
from .errors import PreflightError
from .plan import PlannedFault
from .probecheck import unread_probes
from .running import Run
from .sequential import SequentialWatch
from .steady import check_steady
from .targets import TargetError
from .trials import Window

__all__ = ["run_phases"]


async def run_phases(
    run: Run, planned: list[PlannedFault]
) -> tuple[list[Window], tuple[float, float]]:
    """Warm-up, baseline, then the trials; stops early when the valve trips."""
    phases = run.exp.phases
    trials: list[Window] = []
    now = time.monotonic()
    warm_end = now + phases.warmup.nanoseconds / 1e9
    run.phase("warmup", now, warm_end)
    baseline = (warm_end, warm_end + phases.baseline.nanoseconds / 1e9)
    if not await run.wait_until(warm_end):
        return trials, baseline
    run.phase("baseline", *baseline)
    if not await run.wait_until(baseline[1]):
        return trials, baseline
    if run.group_of is not None and run.exp.load is not None:
        header = run.exp.load.group_header or ""
        run.group_of.check(run.samples, baseline, header)
    run.steady = check_steady(run.exp, run.samples, run.probes, baseline, now=time.monotonic())
    if not run.steady.held:  # a system broken before any fault: that is the finding
        for problem in run.steady.problems:
            run.log(f"not steady before any fault: {problem}")
        run.log("no fault was applied")
        return trials, baseline
    unread = unread_probes(run.probes)  # the system answers, its probe does not: the probe
    if unread is not None:
        raise PreflightError(unread)
    if run.exp.hypothesis.sequential:
        run.sequential = SequentialWatch(run.exp, run.samples, baseline, concurrent=run.concurrent)
    for number in range(1, run.exp.hypothesis.trials + 1):
        if trials and not _back_to_steady(run, trials[-1], number):
            break
        window = await _trial(run, number, planned)
        if window is None:
            break
        trials.append(window)
    return trials, baseline


async def _trial(run: Run, number: int, planned: list[PlannedFault]) -> Window | None:
    phases = run.exp.phases
    start = time.monotonic()
    end = start + phases.fault.nanoseconds / 1e9
    run.phase("fault", start, end, number)
    events_before = len(run.faults.events)
    timeline = sorted(
        [(p.start, "inject", p) for p in planned] + [(p.end, "revert", p) for p in planned],
        key=lambda item: (item[0], item[1] == "inject"),
    )
    current: dict[tuple[str, str], Target] = {}
    if run.live is not None:
        with contextlib.suppress(TargetError):  # no listing now: the planned targets do
            listed = await asyncio.to_thread(run.live.targets)
            current = {(t.kind, t.name): t for t in listed}
    live: dict[int, list[AppliedFault]] = {}
    enough = asyncio.Event()  # the sequential tests have the answer: end the phase now
    watch = run.sequential
    looking = (
        asyncio.create_task(_look_each_second(run, watch, start, enough))
        if watch is not None and watch.active
        else None
    )
    try:
        untripped = await _timeline(
                run,             start, end, timeline, live=live, current=current, enough=enough
        )  # fmt: skip
        if not untripped:
            return None
    finally:
        if looking is not None:
            looking.cancel()
    if enough.is_set():
        end = time.monotonic()
        run.phases[-1]["end"] = end
        why = "a target is gone" if run.gone else "the sequential tests have the answer"
        run.log(f"{why}: fault phase over at {end - start:.0f}s")
        await run.revert([r for rs in live.values() for r in rs])
    if run.gone:
        applied = any(e["event"] == "inject" for e in run.faults.events[events_before:])
        run.stopped = (
            f"no trial after trial {number}: {'; '.join(run.gone)}"
            if applied
            else f"trial {number} was not run: {'; '.join(run.gone)}"
        )
        if not applied:
            return None
    recovery_end = end + phases.recovery.nanoseconds / 1e9
    run.phase("recovery", end, recovery_end, number)
    if not await run.wait_until(recovery_end):
        return None
    reverts = [e["at"] for e in run.faults.events[events_before:] if e["event"] == "revert"]
    return Window(start, end, recovery_end, max(reverts) if reverts else None)


async def _timeline(
    run: Run,
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
        if not await run.wait_until(start + offset, enough):
            return False
        if enough.is_set():
            return True
        if action == "inject":
            live[item.index] = []
            for planned in item.records:
                target = current.get((planned.target.kind, planned.target.name))
                try:
                    record = run.faults.plan(item.fault_of(planned), target or planned.target)
                    live[item.index].append(record)
                    await run.faults.inject(record)
                except TargetGone as gone:  # the system lost it: end the phase, say so
                    run.target_gone(gone)
                    enough.set()
            if enough.is_set():
                return True
        else:
            await run.revert(live[item.index])
    return await run.wait_until(end, enough)


async def _look_each_second(
    run: Run, watch: SequentialWatch, start: float, enough: asyncio.Event
) -> None:
    """Feed the sequential tests every second with the requests whose answers are surely
    in (due at least the load's timeout ago); set ``enough`` once they have the answer."""
    timeout = run.exp.load.timeout.seconds if run.exp.load is not None else 0.0
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


def _back_to_steady(run: Run, last: Window, number: int) -> bool:
    """Before trial ``number``: is the system back in its steady state at the end of the
    last trial's recovery (its declared limits and abort thresholds, most requests)? If
    not, no further fault is injected and the run says why."""
    span = min(last.recovery_end - last.revert_at, run.exp.recovery_hold().seconds or 1.0)
    check = check_steady(
        run.exp, run.samples, run.probes, (last.recovery_end - span, last.recovery_end),
        now=time.monotonic(), drift=False,
    )  # fmt: skip
    if check.held:
        return True
    run.stopped = (
        f"trial {number} was not run: the system was not back in its steady state at the end "
        f"of trial {number - 1}'s recovery ({'; '.join(check.problems)})"
    )
    run.log(run.stopped)
    return False
