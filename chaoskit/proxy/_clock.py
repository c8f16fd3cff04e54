"""Waiting for a deadline more finely than the event loop can.

asyncio's selector waits in whole milliseconds, rounded up (``epoll_wait`` takes a timeout in
ms), so ``asyncio.sleep(10e-6)`` costs about a millisecond, and a 1.3 ms latency becomes 2 ms.
:func:`sleep_until` lets the loop sleep the coarse part and hands the last stretch to one timer
thread, which waits on the OS's fine clock and wakes the loop with ``call_soon_threadsafe``.
Written by hand: no maintained library gives asyncio sub-millisecond timers. The load
generator's ``MonotonicTimer`` (a timerfd per sender, spinning its last microseconds) sits in a
layer the proxy must not import, and would need a descriptor per event loop closed with it;
one thread serves every loop of every server in the process without either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
import threading
import time

__all__ = ["FINE", "sleep_until"]

FINE = 0.002
"""Seconds before a deadline at which the loop's own sleep hands over to the timer thread:
the loop's rounding (up to 1 ms) plus a margin for a busy loop."""

_PR_SET_TIMERSLACK = 29


class _TimerThread:
    """One daemon thread that resolves futures at their deadlines, for any number of loops."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def wake_at(
        self, when: float, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]
    ) -> None:
        """Resolve ``future`` on ``loop`` at ``when`` (``time.monotonic()`` seconds)."""
        with self._changed:
            heapq.heappush(self._due, (when, next(self._order), loop, future))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="proxy-timer", daemon=True)
                self._thread.start()
            if self._due[0][3] is future:
                self._changed.notify()

    def forget(self) -> None:
        """Start afresh (in a forked child: the thread and its deadlines stayed in the parent)."""
        self._due = []
        self._changed = threading.Condition()
        self._thread = None

    def _run(self) -> None:
        _fine_timer_slack()
        while True:
            with self._changed:
                while not self._due:
                    self._changed.wait()
                wait = self._due[0][0] - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                _when, _order, loop, future = heapq.heappop(self._due)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)


def _fine_timer_slack() -> None:
    """Ask Linux to wake this thread within 1 µs of its deadlines rather than the default 50 µs
    (``prctl(PR_SET_TIMERSLACK)``; elsewhere, or if refused, the default stays)."""
    with contextlib.suppress(OSError, AttributeError):
        nanoseconds, zero = ctypes.c_ulong(1000), ctypes.c_ulong(0)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, nanoseconds, zero, zero, zero)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled wait
        future.set_result(None)


_TIMER = _TimerThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_TIMER.forget)


async def sleep_until(when: float) -> None:
    """Return at loop time ``when``, to within about a tenth of a millisecond on an idle
    machine; at once if it has passed."""
    loop = asyncio.get_running_loop()
    coarse = when - FINE - loop.time()
    if coarse > 0:
        await asyncio.sleep(coarse)
    left = when - loop.time()
    if left <= 0:
        return
    future: asyncio.Future[None] = loop.create_future()
    _TIMER.wake_at(time.monotonic() + left, loop, future)
    await future
