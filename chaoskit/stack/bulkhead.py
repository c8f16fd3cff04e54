"""A bulkhead: at most ``limit`` calls at once and ``queue`` waiting; the rest are rejected at
once, so one slow dependency cannot take every worker with it."""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Bulkhead", "BulkheadFullError"]


class BulkheadFullError(Exception):
    """Every slot and every queue place is taken."""


class Bulkhead:
    """``async with bulkhead:`` runs the block in a slot, waits in the queue, or raises."""

    def __init__(self, limit: int, queue: int) -> None:
        if limit < 1 or queue < 0:
            raise ValueError(f"bulkhead needs limit >= 1 and queue >= 0, got {limit}, {queue}")
        self.limit = limit
        self.queue = queue
        self._slots = asyncio.Semaphore(limit)
        self.active = 0
        self.waiting = 0
        self.rejected = 0
        self.peak = 0

    async def __aenter__(self) -> Bulkhead:
        if self.active >= self.limit and self.waiting >= self.queue:
            self.rejected += 1
            raise BulkheadFullError(f"bulkhead full: {self.limit} running, {self.queue} queued")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.active -= 1
        self._slots.release()
