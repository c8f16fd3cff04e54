"""The proxy's fine timer: it never wakes a toxic early, and it outlives cancelled waits."""

from __future__ import annotations

import asyncio
import os
import random

from chaoskit.proxy._clock import FINE, sleep_until


def test_sleep_until_never_returns_before_its_deadline() -> None:
    """Deadlines below, around and above the hand-over to the timer thread, some already past."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        rng = random.Random(3)
        early = []
        for _ in range(200):
            when = loop.time() + rng.uniform(-0.001, 2 * FINE)
            await sleep_until(when)
            early.append(when - loop.time())
        return early

    assert max(asyncio.run(main())) <= 0


def test_a_cancelled_wait_does_not_disturb_the_others() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def wait(name: str, after: float) -> None:
            await sleep_until(loop.time() + after)
            order.append(name)

        doomed = asyncio.create_task(wait("cancelled", 0.0005))
        kept = [asyncio.create_task(wait(f"w{i}", 0.0002 * i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.gather(*kept)
        await asyncio.sleep(0.002)  # past the cancelled deadline: its wake-up must be harmless
        return order

    assert asyncio.run(main()) == ["w1", "w2", "w3", "w4", "w5"]


def test_waits_on_two_event_loops_at_once() -> None:
    """Servers in threads each run their own loop; one timer thread serves them all."""
    import threading

    done: list[bool] = []

    def run() -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            for _ in range(50):
                when = loop.time() + 0.0003
                await sleep_until(when)
                assert loop.time() >= when
            done.append(True)

        asyncio.run(main())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done == [True, True]


def test_a_forked_child_gets_a_timer_of_its_own() -> None:
    """The thread stays in the parent; a child that waited on its copy would wait forever."""

    async def once() -> None:
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(sleep_until(loop.time() + 0.001), 5)

    asyncio.run(once())  # the parent's timer thread is running now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if its wait returned, 1 if it hung
        try:
            asyncio.run(once())
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
