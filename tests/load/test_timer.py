"""The generator's monotonic timer: never early, on time (timerfd on Linux, call_at otherwise),
also once it has learnt to wake ahead and spin the rest."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from chaoskit.load import _timer
from chaoskit.load._timer import MonotonicTimer


async def fire_times(offsets: list[float]) -> tuple[bool, list[tuple[float, float]]]:
    """Arm the timer for each offset in turn; (is it precise, [(wanted, fired)])."""
    loop = asyncio.get_running_loop()
    fired: asyncio.Queue[float] = asyncio.Queue()
    timer = MonotonicTimer(loop, lambda: fired.put_nowait(time.monotonic()))
    results = []
    precise = timer.precise
    try:
        for offset in offsets:
            wanted = time.monotonic() + offset
            timer.at(wanted)
            results.append((wanted, await asyncio.wait_for(fired.get(), 2)))
        timer.at(time.monotonic() + 0.05)
        timer.cancel()  # disarmed: nothing fires
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(fired.get(), 0.15)
    finally:
        timer.close()
    return precise, results


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux only")
def test_the_timer_fires_on_time_on_linux() -> None:
    precise, results = asyncio.run(fire_times([0.0, 0.003, 0.0105, 0.02]))
    assert precise
    assert all(fired >= wanted for wanted, fired in results)
    lateness = sorted(fired - wanted for wanted, fired in results)
    assert lateness[len(lateness) // 2] < 0.005  # generous: a busy 2-core machine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux only")
def test_the_timer_is_never_early_once_it_wakes_ahead_of_time() -> None:
    async def scenario() -> tuple[float, list[tuple[float, float]]]:
        loop = asyncio.get_running_loop()
        fired: list[tuple[float, float]] = []
        done = loop.create_future()
        wanted = time.monotonic() + 0.001

        def tick() -> None:
            nonlocal wanted
            fired.append((wanted, time.monotonic()))
            if len(fired) == 300:
                done.set_result(None)
            else:
                wanted += 0.0005
                timer.at(wanted)

        timer = MonotonicTimer(loop, tick)
        timer.at(wanted)
        try:
            await asyncio.wait_for(done, 10)
            return timer.lead, fired
        finally:
            timer.close()

    lead, fired = asyncio.run(scenario())
    assert lead > 0  # waking from sleep takes time on any machine: it learnt to wake ahead
    assert all(at >= wanted for wanted, at in fired)


def test_without_timerfd_the_timer_falls_back_to_call_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_timer, "_libc", lambda: None)
    precise, results = asyncio.run(fire_times([0.0, 0.005, 0.02]))
    assert not precise
    assert all(fired >= wanted - 0.001 for wanted, fired in results)  # asyncio may be 1ms early
    assert all(fired - wanted < 0.5 for wanted, fired in results)
