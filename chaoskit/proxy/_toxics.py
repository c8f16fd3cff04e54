"""The toxics: their attributes as the API shows them, their checks, and what each one does.

Behaviours follow the Toxiproxy 2.12 server (the API: ``openapi.yaml`` beside this module,
compatibility: docs/proxy.md); the checks refuse the inputs that hang or crash that server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._clock import sleep_until
from ._json import Float32
from ._stream import EOF, Chunk, Item, Stub, pass_through

__all__ = ["KINDS", "ToxicKind", "ToxicSpec"]

Attributes = dict[str, int]


@dataclass(frozen=True)
class ToxicKind:
    """A toxic type: its attribute fields (JSON name, Go type) and its behaviour."""

    name: str
    fields: tuple[tuple[str, str], ...]
    run: Callable[[Stub], Awaitable[None]]
    check: Callable[[Attributes], str | None] = lambda _attributes: None
    closes_on_removal: bool = False
    """Removing it closes the connections it ran on (Toxiproxy's timeout cleanup)."""
    lingers: bool = False
    """Connections that start while it exists close with RST (SO_LINGER 0)."""

    def defaults(self) -> Attributes:
        """Every attribute at zero, as Go's zero-valued struct."""
        return {name: 0 for name, _kind in self.fields}


@dataclass
class ToxicSpec:
    """One toxic as the API knows it; its attributes change in place on update."""

    name: str
    kind: ToxicKind
    stream: str
    """The stream as the client spelled it (echoed back), e.g. ``UpStream``."""
    upstream: bool
    toxicity: Float32
    attributes: Attributes = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The toxic's JSON object, keys in the order the real server prints them."""
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.kind.name,
            "stream": self.stream,
            "toxicity": self.toxicity,
        }


def _non_negative(*names: str) -> Callable[[Attributes], str | None]:
    def check(attributes: Attributes) -> str | None:
        for name in names:
            if attributes[name] < 0:
                return f"{name} must not be negative (got {attributes[name]})"
        return None

    return check


async def _sleep(seconds: float) -> None:
    await sleep_until(asyncio.get_running_loop().time() + seconds)


async def _take_on_schedule(stub: Stub, due: float) -> tuple[Item, float]:
    """The next item, and when a toxic that paces its stream may pass it on: at ``due`` if
    the item was already waiting (the stream is behind), else from now (it was idle). Not the
    item's read time: a pacing toxic earlier in the chain passes data on long after it."""
    idle = stub.input.empty
    item = await stub.take()
    return item, max(due, asyncio.get_running_loop().time()) if idle else due


# -- behaviours ---------------------------------------------------------------------------------


async def _latency(stub: Stub) -> None:
    """Delay each chunk by latency ± jitter, counted from when it was read."""
    while True:
        item = await stub.take()
        if not isinstance(item, Chunk):
            stub.emit(item)
            return
        attributes = stub.spec.attributes
        delay = attributes["latency"] / 1000
        jitter = attributes["jitter"] / 1000
        if jitter > 0:
            delay += stub.rng.uniform(-jitter, jitter)
        due = item.ts + max(delay, 0.0)
        await sleep_until(due)
        item.ts = max(item.ts, due)
        stub.emit(item)


async def _bandwidth(stub: Stub) -> None:
    """Pass ``rate`` KB/s per connection; big chunks go in pieces 100 ms apart.

    Each chunk is due when the ones before it have had their time, so time a late wake-up
    overshoots is taken off the next chunk (as Toxiproxy carries it over) and the rate holds;
    a chunk that arrives after the stream went idle counts from its arrival.
    """
    due = asyncio.get_running_loop().time()
    while True:
        item, due = await _take_on_schedule(stub, due)
        if not isinstance(item, Chunk):
            stub.emit(item)
            return
        rate = stub.spec.attributes["rate"] * 1000  # bytes per second
        piece = max(rate // 10, 1)
        while len(item.data) > piece:
            due += piece / rate
            await sleep_until(due)
            rest = Chunk(item.data[piece:], item.ts)
            stub.emit_part(item.data[:piece], rest)
            item = rest
        due += len(item.data) / rate
        await sleep_until(due)
        stub.emit(item)


async def _slow_close(stub: Stub) -> None:
    """Let data through; hold the EOF back for ``delay`` ms."""
    while True:
        item = await stub.take()
        if item is EOF:
            await _sleep(stub.spec.attributes["delay"] / 1000)
        stub.emit(item)
        if item is EOF:
            return


async def _timeout(stub: Stub) -> None:
    """Drop everything; close ``timeout`` ms after the start or the last dropped chunk."""
    loop = asyncio.get_running_loop()
    timeout = stub.spec.attributes["timeout"] / 1000
    while True:
        if timeout > 0:
            try:
                async with asyncio.timeout_at(loop.time() + timeout):
                    item = await stub.take()
            except TimeoutError:
                stub.close()
                return
        else:
            item = await stub.take()
        if item is EOF:
            stub.close()
            return
        stub.drop()


async def _reset_peer(stub: Stub) -> None:
    """On the first chunk or EOF: drop it, wait ``timeout`` ms, then close (RST if lingering)."""
    await stub.take()
    stub.drop()
    await _sleep(stub.spec.attributes["timeout"] / 1000)
    stub.close()


def _slices(size: int, average: int, variation: int, stub: Stub) -> list[int]:
    """Piece lengths: halve until within ``average + variation``, shifting each cut ±variation.
    A cut at 0 (possible when the variation equals the average) makes no piece."""
    pieces: list[int] = []
    pending = [size]
    while pending:
        length = pending.pop()
        if length - average <= variation:
            if length:
                pieces.append(length)
            continue
        mid = length // 2
        if variation > 0:
            mid += stub.rng.randrange(2 * variation) - variation
        pending.append(length - mid)
        pending.append(mid)
    return pieces


async def _slicer(stub: Stub) -> None:
    """Cut each chunk into pieces of about ``average_size`` bytes, ``delay`` µs apart.

    Pieces keep to a schedule, each ``delay`` after the one before, so the rate holds whatever
    a wake-up costs: one that comes late writes the pieces already due together (at delays of
    a few µs, a write per piece would cost more than the delay). Data that arrives after the
    stream went idle starts the schedule anew rather than going out in a burst.
    """
    loop = asyncio.get_running_loop()
    due = loop.time()
    while True:
        item, due = await _take_on_schedule(stub, due)
        if not isinstance(item, Chunk):
            stub.emit(item)
            return
        attributes = stub.spec.attributes
        pieces = iter(
            _slices(len(item.data), attributes["average_size"], attributes["size_variation"], stub)
        )
        delay = attributes["delay"] / 1e6
        for first in pieces:
            await sleep_until(due)
            length, due = first, due + delay
            while delay > 0 and due <= loop.time() and length < len(item.data):
                length += next(pieces)  # overdue: goes out with this one
                due += delay
            if length < len(item.data):
                rest = Chunk(item.data[length:], item.ts)
                stub.emit_part(item.data[:length], rest)
                item = rest
            else:
                stub.emit(item)


async def _limit_data(stub: Stub) -> None:
    """Close the connection once ``bytes`` have passed; the count survives updates."""
    state = stub.state
    state.setdefault("sent", 0)
    while True:
        item = await stub.take()
        if not isinstance(item, Chunk):
            stub.close()
            return
        remaining = max(stub.spec.attributes["bytes"] - state["sent"], 0)
        if remaining < len(item.data):
            item = Chunk(item.data[:remaining], item.ts)
        if item.data:
            state["sent"] += len(item.data)
            stub.emit(item)
        else:
            stub.drop()
        if remaining - len(item.data) <= 0:
            stub.close()
            return


def _check_bandwidth(attributes: Attributes) -> str | None:
    if attributes["rate"] <= 0:
        return (
            f"rate must be at least 1 KB/s (got {attributes['rate']}): a rate of 0 or less would "
            "stall or crash the connection; to stall it on purpose use a timeout toxic"
        )
    return None


def _check_slicer(attributes: Attributes) -> str | None:
    average, variation = attributes["average_size"], attributes["size_variation"]
    if average <= 0:
        return f"average_size must be at least 1 byte (got {average})"
    if variation < 0 or variation > average:  # above the average, a cut can fall before 0
        return (
            f"size_variation must be at least 0 and at most average_size ({average}), "
            f"got {variation}"
        )
    if attributes["delay"] < 0:
        return f"delay must not be negative (got {attributes['delay']} µs)"
    return None


KINDS: dict[str, ToxicKind] = {
    kind.name: kind
    for kind in (
        ToxicKind("noop", (), pass_through),
        ToxicKind(
            "latency",
            (("latency", "int64"), ("jitter", "int64")),
            _latency,
            _non_negative("latency", "jitter"),
        ),
        ToxicKind("bandwidth", (("rate", "int64"),), _bandwidth, _check_bandwidth),
        ToxicKind("slow_close", (("delay", "int64"),), _slow_close, _non_negative("delay")),
        ToxicKind(
            "timeout",
            (("timeout", "int64"),),
            _timeout,
            _non_negative("timeout"),
            closes_on_removal=True,
        ),
        ToxicKind(
            "reset_peer",
            (("timeout", "int64"),),
            _reset_peer,
            _non_negative("timeout"),
            lingers=True,
        ),
        ToxicKind(
            "slicer",
            (("average_size", "int"), ("size_variation", "int"), ("delay", "int")),
            _slicer,
            _check_slicer,
        ),
        ToxicKind("limit_data", (("bytes", "int64"),), _limit_data, _non_negative("bytes")),
    )
}
"""Every toxic type by its API name."""
