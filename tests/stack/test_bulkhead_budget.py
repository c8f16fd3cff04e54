"""The bulkhead holds its bound exactly, hands slots over in arrival order and expires waiters
at the queue deadline; the retry budget caps retries."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoskit.stack.budget import RetryBudget
from chaoskit.stack.bulkhead import Bulkhead, BulkheadFullError, BulkheadTimeoutError


async def _load(limit: int, queue: int, tasks: int, work: list[int]) -> tuple[int, int, int, int]:
    bulkhead = Bulkhead(limit, queue)
    running = 0
    worst = 0
    worst_waiting = 0
    done = 0

    async def one(i: int) -> None:
        nonlocal running, worst, worst_waiting, done
        for _ in range(i % 4):  # arrivals spread over the steps in which slots change hands
            await asyncio.sleep(0)
        try:
            async with bulkhead:
                running += 1
                worst = max(worst, running)
                for _ in range(work[i % len(work)]):
                    worst_waiting = max(worst_waiting, bulkhead.waiting)
                    await asyncio.sleep(0)
                running -= 1
                done += 1
        except BulkheadFullError:
            pass
        worst_waiting = max(worst_waiting, bulkhead.waiting)

    await asyncio.gather(*(one(i) for i in range(tasks)))
    return worst, worst_waiting, done, bulkhead.rejected


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
    worst, worst_waiting, done, rejected = asyncio.run(_load(limit, queue, tasks, work))
    assert worst <= limit
    assert worst_waiting <= queue
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


def test_a_released_slot_goes_to_the_oldest_waiter_and_newcomers_queue_behind() -> None:
    """While a slot changes hands (released, its new holder not yet running), the queue bound
    still holds and a newcomer neither takes the slot nor an extra queue place."""

    async def scenario() -> tuple[list[str], list[str], int]:
        bulkhead = Bulkhead(limit=1, queue=1)
        order: list[str] = []
        outcome: list[str] = []
        gate = asyncio.Event()
        worst_waiting = 0

        async def call(name: str, hold: bool = False) -> None:
            nonlocal worst_waiting
            try:
                async with bulkhead:
                    worst_waiting = max(worst_waiting, bulkhead.waiting)
                    order.append(name)
                    if hold:
                        await gate.wait()
            except BulkheadFullError:
                outcome.append(f"{name} rejected")
                return
            finally:
                worst_waiting = max(worst_waiting, bulkhead.waiting)
            outcome.append(f"{name} served")

        first = asyncio.create_task(call("a", hold=True))
        await asyncio.sleep(0)
        queued = asyncio.create_task(call("b"))
        await asyncio.sleep(0)
        assert (bulkhead.active, bulkhead.waiting) == (1, 1)
        gate.set()  # a runs next and releases its slot to b; c and d arrive before b runs
        late = [asyncio.create_task(call("c")), asyncio.create_task(call("d"))]
        await asyncio.gather(first, queued, *late)
        assert (bulkhead.active, bulkhead.waiting) == (0, 0)
        return order, outcome, worst_waiting

    order, outcome, worst_waiting = asyncio.run(scenario())
    assert order == ["a", "b", "c"]
    assert "d rejected" in outcome
    assert worst_waiting <= 1


def test_waiters_get_slots_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        bulkhead = Bulkhead(limit=1, queue=10)
        order: list[int] = []
        gate = asyncio.Event()

        async def call(n: int) -> None:
            async with bulkhead:
                order.append(n)
                if n == 0:
                    await gate.wait()

        tasks = [asyncio.create_task(call(n)) for n in range(8)]
        while bulkhead.waiting < 7:
            await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == list(range(8))


def test_a_waiter_leaves_the_queue_at_its_deadline() -> None:
    async def scenario() -> tuple[float, int, int]:
        bulkhead = Bulkhead(limit=1, queue=2, timeout=0.1)
        gate = asyncio.Event()

        async def hold() -> None:
            async with bulkhead:
                await gate.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        began = time.monotonic()
        with pytest.raises(BulkheadTimeoutError):
            async with bulkhead:
                pass
        waited = time.monotonic() - began
        waiting = bulkhead.waiting
        gate.set()
        await holder
        return waited, waiting, bulkhead.expired

    waited, waiting, expired = asyncio.run(scenario())
    assert 0.099 <= waited < 1.0
    assert (waiting, expired) == (0, 1)


def test_a_cancelled_waiter_gives_up_its_place_and_any_slot_handed_to_it() -> None:
    async def scenario() -> list[str]:
        bulkhead = Bulkhead(limit=1, queue=3)
        order: list[str] = []
        gate = asyncio.Event()
        waiters: dict[str, asyncio.Task[None]] = {}

        async def call(name: str) -> None:
            async with bulkhead:
                order.append(name)

        async def hold() -> None:
            async with bulkhead:
                order.append("a")
                await gate.wait()
            waiters["c"].cancel()  # its slot was handed to c just now; c has not run yet

        first = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiters.update({n: asyncio.create_task(call(n)) for n in "bcd"})
        await asyncio.sleep(0)
        assert bulkhead.waiting == 3
        waiters["b"].cancel()  # cancelled while waiting
        await asyncio.sleep(0)
        assert bulkhead.waiting == 2
        gate.set()
        await first
        for name in "bc":
            with pytest.raises(asyncio.CancelledError):
                await waiters[name]
        await asyncio.wait_for(waiters["d"], 5)  # the slot c was handed reaches d
        assert (bulkhead.active, bulkhead.waiting) == (0, 0)
        return order

    assert asyncio.run(scenario()) == ["a", "d"]


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
