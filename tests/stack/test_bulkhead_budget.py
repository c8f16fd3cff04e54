"""The bulkhead holds its bound exactly, hands slots over in arrival order and expires waiters
at the queue deadline, in-process and through the real frontend process; the retry budget
caps retries."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from waiting import answers, get_json, wait_until

from chaoskit.stack.budget import RetryBudget
from chaoskit.stack.bulkhead import Bulkhead, BulkheadFullError, BulkheadTimeoutError
from chaoskit.stack.launcher import free_ports


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


class GatedBackend:
    """A backend on real HTTP (in a thread of the test process): answers ``POST /token`` at
    once and holds every ``/items`` call until the test releases it; it notes arrivals."""

    # the frontend is the unit under test, as its own process; this double stands in for the
    # slow dependency, so the test decides exactly when each call ends

    def __init__(self) -> None:
        self.arrived: list[Any] = []
        """Each /items call in arrival order: its JSON body, or None for a GET."""
        self._gates: list[asyncio.Event] = []
        self._changed = threading.Condition()
        self._open = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    async def _token(self, request: web.Request) -> web.Response:
        return web.json_response({"token": "t", "expires_at": time.time() + 600})

    async def _items(self, request: web.Request) -> web.Response:
        body = await request.json() if request.method == "POST" else None
        gate = asyncio.Event()
        with self._changed:
            self.arrived.append(body)
            self._gates.append(gate)
            if self._open:
                gate.set()
            self._changed.notify_all()
        await gate.wait()
        if request.method == "POST":
            return web.json_response(body, status=201)
        return web.json_response({"items": []})

    def __enter__(self) -> GatedBackend:
        self._thread.start()
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_get("/items", self._items)
        app.router.add_post("/items", self._items)
        runner = web.AppRunner(app, access_log=None)

        async def start() -> int:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return int(runner.addresses[0][1])

        port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self._runner = runner
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` calls have arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise AssertionError(f"{len(self.arrived)} calls arrived, not {count}")

    def release(self, index: int) -> None:
        """Let call number ``index`` (from 0) answer."""
        with self._changed:
            gate = self._gates[index]
        self._loop.call_soon_threadsafe(gate.set)

    def release_all(self) -> None:
        """Let every call answer, those held and those to come."""
        with self._changed:
            self._open = True
            gates = list(self._gates)
        for gate in gates:
            self._loop.call_soon_threadsafe(gate.set)


@contextlib.contextmanager
def frontend(backend: GatedBackend, *options: str) -> Iterator[str]:
    """The real frontend process in front of ``backend``; yields its base URL."""
    [port] = free_ports(1)
    argv = [
        sys.executable, "-m", "chaoskit.stack.frontend", "--port", str(port),
        "--backend", f"backend-1={backend.url}", "--try-timeout", "60", *options,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is None and answers(f"{base}/health/live"), 60, "the frontend"
        )
        yield base
    finally:
        backend.release_all()  # the frontend's shutdown waits for the calls it has in flight
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bulkhead_status(base: str) -> dict[str, int]:
    status = get_json(f"{base}/status")
    assert isinstance(status, dict)
    found: dict[str, int] = status["bulkhead"]
    return found


def test_frontend_admits_exactly_limit_plus_queue_of_a_burst_and_rejects_the_rest_at_once() -> None:
    async def burst(base: str, backend: GatedBackend) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            calls = [asyncio.create_task(client.get(f"{base}/items")) for _ in range(20)]
            pending: set[asyncio.Task[httpx.Response]] = set(calls)
            try:
                deadline = time.monotonic() + 20
                while len(pending) > 5 and time.monotonic() < deadline:
                    _, pending = await asyncio.wait(
                        pending, timeout=deadline - time.monotonic(), return_when="FIRST_COMPLETED"
                    )
                # the backend still holds both slots' calls, and 15 are answered: all refused
                rejected = [c.result() for c in calls if c not in pending]
                assert [r.status_code for r in rejected] == [503] * 15
                assert {r.json()["reason"] for r in rejected} == {"queue full"}
                await asyncio.to_thread(backend.wait_for, 2)
                assert bulkhead_status(base) == {
                    "active": 2, "waiting": 3, "rejected": 15, "expired": 0
                }  # fmt: skip
                backend.release_all()
                served = await asyncio.gather(*pending)
                assert [a.status_code for a in served] == [200] * 5
            finally:
                for call in pending:
                    call.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    with GatedBackend() as backend, frontend(backend, "--concurrency", "2", "--queue", "3",
                                             "--queue-timeout", "60") as base:  # fmt: skip
        asyncio.run(burst(base, backend))
        assert len(backend.arrived) == 5
        assert bulkhead_status(base) == {"active": 0, "waiting": 0, "rejected": 15, "expired": 0}


def test_frontend_serves_queued_requests_in_arrival_order() -> None:
    with GatedBackend() as backend, frontend(backend, "--concurrency", "1", "--queue", "5",
                                             "--queue-timeout", "60") as base:  # fmt: skip
        with httpx.Client(trust_env=False, timeout=30) as client:
            answers_: list[httpx.Response] = []
            threads = []
            for n in range(5):
                thread = threading.Thread(
                    target=lambda n=n: answers_.append(client.post(f"{base}/items", json={"n": n}))
                )
                thread.start()
                threads.append(thread)
                if n == 0:
                    backend.wait_for(1)
                else:
                    wait_until(lambda n=n: bulkhead_status(base)["waiting"] == n, 10, f"{n} queued")
            for n in range(5):
                backend.wait_for(n + 1)
                assert bulkhead_status(base)["waiting"] == 4 - n
                backend.release(n)
            for thread in threads:
                thread.join(30)
        assert backend.arrived == [{"n": n} for n in range(5)]
        assert sorted(a.status_code for a in answers_) == [201] * 5


def test_frontend_answers_a_request_queued_past_the_deadline_503_and_frees_its_place() -> None:
    with GatedBackend() as backend, frontend(backend, "--concurrency", "1", "--queue", "1",
                                             "--queue-timeout", "0.5") as base:  # fmt: skip
        with httpx.Client(trust_env=False, timeout=30) as client:
            held: list[httpx.Response] = []
            holder = threading.Thread(target=lambda: held.append(client.get(f"{base}/items")))
            holder.start()
            backend.wait_for(1)
            began = time.monotonic()
            late = client.get(f"{base}/items")
            waited = time.monotonic() - began
            assert late.status_code == 503 and late.json()["reason"] == "queue deadline"
            assert 0.5 <= waited < 5
            status = bulkhead_status(base)
            assert (status["active"], status["waiting"], status["expired"]) == (1, 0, 1)
            # its place is free again: the next request queues (and expires), not rejected
            assert client.get(f"{base}/items").json()["reason"] == "queue deadline"
            backend.release(0)
            holder.join(30)
        assert held[0].status_code == 200
        assert bulkhead_status(base) == {"active": 0, "waiting": 0, "rejected": 0, "expired": 2}
        metrics = httpx.get(f"{base}/metrics", trust_env=False).text
        assert "frontend_bulkhead_rejections_total 2.0" in metrics


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
