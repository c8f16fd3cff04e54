"""The pieces a link's toxic chain is made of: chunks, channels between stages, and stubs.

A *stub* runs one toxic on one direction of one connection. Every chain change (add, update,
remove) happens synchronously on the event loop: a stub's task is cancelled, whatever it held is
put back or passed on in order, and a fresh task starts — so no byte is lost or reordered.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from ._toxics import ToxicSpec

__all__ = ["EOF", "Channel", "Chunk", "Item", "Outlet", "Stub"]


class _Eof:
    __slots__ = ()

    def __repr__(self) -> str:
        return "EOF"


EOF: Final = _Eof()
"""The end of a direction's data, passed down the chain in order like a chunk."""


class Chunk:
    """Bytes read in one ``recv``, stamped with when they were read (loop time, seconds)."""

    __slots__ = ("data", "ts")

    def __init__(self, data: bytes, ts: float) -> None:
        self.data = data
        self.ts = ts

    def __repr__(self) -> str:
        return f"Chunk({len(self.data)} B @ {self.ts:.6f})"


Item = Chunk | _Eof


class Outlet(Protocol):
    """Where a stage puts what it lets through: the next channel, or the link's sink."""

    def put(self, item: Item) -> None: ...

    def extend(self, items: Iterable[Item]) -> None: ...


class Channel:
    """An unbounded FIFO between two stages; the link bounds what is buffered by pausing reads."""

    __slots__ = ("_items", "_on_take", "_waiter", "nbytes")

    def __init__(self, on_take: Callable[[], None]) -> None:
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_take = on_take
        self.nbytes = 0

    def put(self, item: Item) -> None:
        """Append ``item`` and wake the stage waiting on this channel."""
        self._items.append(item)
        if isinstance(item, Chunk):
            self.nbytes += len(item.data)
        self._wake()

    def extend(self, items: Iterable[Item]) -> None:
        """Append several items in order."""
        for item in items:
            self.put(item)

    def push_front(self, items: list[Item]) -> None:
        """Put items back at the head, in order (what an interrupted stage held)."""
        for item in reversed(items):
            self._items.appendleft(item)
            if isinstance(item, Chunk):
                self.nbytes += len(item.data)
        if items:
            self._wake()

    @property
    def empty(self) -> bool:
        """Nothing is queued: a :meth:`get` now would wait."""
        return not self._items

    def drain(self) -> list[Item]:
        """Everything queued, emptying the channel."""
        items = list(self._items)
        self._items.clear()
        self.nbytes = 0
        return items

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Item:
        """The next item; cancelling the wait never loses one."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        item = self._items.popleft()
        if isinstance(item, Chunk):
            self.nbytes -= len(item.data)
        self._on_take()
        return item


class Stub:
    """One toxic running on one direction of one connection.

    A toxic's behaviour uses :meth:`take` and :meth:`emit`; whatever it has taken and not yet
    passed on is its ``held`` item, which an interruption hands back so nothing is lost.
    """

    __slots__ = ("active", "closed", "held", "input", "output", "rng", "spec", "state", "task")

    def __init__(
        self, spec: ToxicSpec, source: Channel, output: Outlet, rng: random.Random
    ) -> None:
        self.spec = spec
        self.input = source
        self.output = output
        self.rng = rng
        self.state: dict[str, Any] = {}
        self.held: Item | None = None
        self.closed = False
        self.active = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Roll toxicity for this run (Toxiproxy rolls per connection, per start) and run it."""
        self.active = self.rng.random() < self.spec.toxicity
        behaviour = self.spec.kind.run if self.active else pass_through
        self.task = asyncio.get_running_loop().create_task(self._run(behaviour))

    async def _run(self, behaviour: Callable[[Stub], Awaitable[None]]) -> None:
        await behaviour(self)

    def interrupt(self) -> list[Item]:
        """Stop the running task; return what it held, to be passed on or put back in order."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        held, self.held = self.held, None
        return [] if held is None else [held]

    def restart(self) -> None:
        """Restart with the toxic's current attributes, re-rolling toxicity."""
        if self.closed:
            return
        self.input.push_front(self.interrupt())
        self.start()

    # -- what a toxic's behaviour calls --------------------------------------------------------

    async def take(self) -> Item:
        """The next item from upstream in the chain; it is held until emitted or dropped."""
        item = await self.input.get()
        self.held = item
        return item

    def emit(self, item: Item) -> None:
        """Pass ``item`` on; it is no longer held."""
        self.held = None
        if item is EOF:
            self.closed = True
        self.output.put(item)

    def emit_part(self, piece: bytes, rest: Chunk) -> None:
        """Pass on the first ``piece`` of the held chunk; ``rest`` is still held."""
        self.output.put(Chunk(piece, rest.ts))
        self.held = rest

    def drop(self) -> None:
        """Forget the held item (a toxic that discards data)."""
        self.held = None

    def close(self) -> None:
        """End this direction: EOF goes on, and the connection closes once it arrives."""
        self.held = None
        self.closed = True
        self.output.put(EOF)


async def pass_through(stub: Stub) -> None:
    """What a toxic does on a connection its toxicity roll spared: nothing."""
    while True:
        item = await stub.take()
        stub.emit(item)
        if item is EOF:
            return
