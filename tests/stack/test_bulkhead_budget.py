"""The bulkhead never exceeds its bound under concurrent load; the retry budget caps retries."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoskit.stack.budget import RetryBudget
from chaoskit.stack.bulkhead import Bulkhead, BulkheadFullError


async def _load(limit: int, queue: int, tasks: int, work: list[int]) -> tuple[int, int, int]:
    bulkhead = Bulkhead(limit, queue)
    running = 0
    worst = 0
    done = 0

    async def one(steps: int) -> None:
        nonlocal running, worst, done
        try:
            async with bulkhead:
                running += 1
                worst = max(worst, running)
                for _ in range(steps):
                    await asyncio.sleep(0)
                running -= 1
                done += 1
        except BulkheadFullError:
            pass

    await asyncio.gather(*(one(work[i % len(work)]) for i in range(tasks)))
    return worst, done, bulkhead.rejected


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 8),
    queue=st.integers(0, 8),
    tasks=st.integers(1, 60),
    work=st.lists(st.integers(0, 5), min_size=1, max_size=10),
)
def test_bulkhead_never_exceeds_its_bound(
    limit: int, queue: int, tasks: int, work: list[int]
) -> None:
    worst, done, rejected = asyncio.run(_load(limit, queue, tasks, work))
    assert worst <= limit
    assert done + rejected == tasks
    if tasks <= limit + queue:
        assert rejected == 0


def test_bulkhead_rejects_when_slots_and_queue_are_full() -> None:
    async def scenario() -> int:
        bulkhead = Bulkhead(limit=1, queue=1)
        gate = asyncio.Event()

        async def hold() -> None:
            async with bulkhead:
                await gate.wait()

        first = asyncio.create_task(hold())
        second = asyncio.create_task(hold())
        while bulkhead.active < 1 or bulkhead.waiting < 1:
            await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError):
            async with bulkhead:
                pass
        gate.set()
        await asyncio.gather(first, second)
        return bulkhead.peak

    assert asyncio.run(scenario()) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_retry_budget_caps_retries_at_a_share_of_requests() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.1, floor_per_second=1.0, capacity=5.0, clock=clock)
    retries = 0
    for i in range(1000):  # 1000 requests over 10 s, every one wanting a retry
        clock.now = i * 0.01
        budget.deposit()
        retries += budget.try_spend()
    # 10% of 1000 + 1/s floor over 10 s + the initial capacity of 5
    assert retries <= 100 + 10 + 5
    assert retries >= 100
    assert budget.refused == 1000 - retries
