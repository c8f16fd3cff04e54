"""A bulkhead: at most ``limit`` calls at once and ``queue`` waiting, each for ``timeout`` seconds
at most; the rest are rejected at once, so one slow dependency cannot take every worker with it.

Written by hand on asyncio futures: ``asyncio.Semaphore`` hands a released slot to its oldest
waiter and lets no newcomer barge past, but it does not say how many wait, and a waiter it has
woken still looks like one until it runs; the bound on the queue needs that count exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

__all__ = ["Bulkhead", "BulkheadFullError", "BulkheadTimeoutError"]


class BulkheadFullError(Exception):
    """Every slot and every queue place is taken."""


class BulkheadTimeoutError(BulkheadFullError):
    """No slot came free before the queue deadline (a kind of full, for one except clause)."""


class Bulkhead:
    """``async with bulkhead:`` runs the block in a slot, waits in the queue, or raises.

    A slot that is released goes straight to the oldest waiter, so ``active`` counts it from
    that moment, and nobody arriving meanwhile can take it; waiters exist only while every slot
    is held. A waiter leaves the queue after ``timeout`` seconds (None: never) with
    :class:`BulkheadTimeoutError`.
    """

    def __init__(self, limit: int, queue: int, timeout: float | None = None) -> None:
        if limit < 1 or queue < 0:
            raise ValueError(f"bulkhead needs limit >= 1 and queue >= 0, got {limit}, {queue}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"bulkhead queue timeout must be above 0 seconds, got {timeout}")
        self.limit = limit
        self.queue = queue
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.active = 0
        """Slots held, including one handed to a waiter that has not resumed yet."""
        self.rejected = 0
        """Calls turned away at once, the queue being full."""
        self.expired = 0
        """Calls that left the queue at its deadline."""
        self.peak = 0

    @property
    def waiting(self) -> int:
        """Calls in the queue (one cancelled from outside counts until its task runs)."""
        return len(self._waiters)

    async def __aenter__(self) -> Bulkhead:
        if self.active < self.limit:  # then nobody waits: a free slot is never left idle
            self.active += 1
            self.peak = max(self.peak, self.active)
            return self
        if len(self._waiters) >= self.queue:
            self.rejected += 1
            raise BulkheadFullError(f"bulkhead full: {self.limit} running, {self.queue} queued")
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[None] = loop.create_future()
        self._waiters.append(slot)
        timer = None if self.timeout is None else loop.call_later(self.timeout, self._expire, slot)
        try:
            await slot  # ours once _release sets its result
        except asyncio.CancelledError:  # cancelled from outside
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self._release()  # a slot was handed over in the instant before: pass it on
            else:
                slot.cancel()
                self._forget(slot)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        """Hand the slot to the oldest waiter still waiting, or free it."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():  # a waiter cancelled from outside is skipped
                slot.set_result(None)
                return
        self.active -= 1

    def _expire(self, slot: asyncio.Future[None]) -> None:
        """The queue deadline of ``slot``'s waiter: out of the queue, with an error."""
        if slot.done():
            return
        self._forget(slot)
        self.expired += 1
        slot.set_exception(
            BulkheadTimeoutError(f"no bulkhead slot within {self.timeout:g}s in the queue")
        )

    def _forget(self, slot: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):  # ValueError: _release dropped it already
            self._waiters.remove(slot)  # the oldest expire first: found at the left
