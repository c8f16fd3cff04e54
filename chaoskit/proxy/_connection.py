"""One proxied TCP connection: two one-way links, each a chain of toxic stubs ending in a sink.

With no toxic on a link, bytes go socket → pipe → socket with ``splice(2)`` and never enter
Python (hand-written on raw file descriptors: asyncio transports cannot splice). With toxics,
each ``recv`` becomes a chunk that walks the chain. Like Toxiproxy, either side's EOF makes the
proxy fully close the other socket; there is no half-close.

On a connection that stays on this host, a pacing congestion control (BBR, a common system
default) is swapped for CUBIC or Reno. The proxy forwards bytes its sender already paced, and
pacing them again costs a timer per burst: with BBR the proxy spent about twice the CPU per
byte, and loopback bulk throughput was about half of what it is unpaced (``benchmarks/proxy.py``
section a). Connections that leave the host keep the system's choice.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import ipaddress
import os
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable

from ._stream import EOF, Channel, Chunk, Item, Outlet, Stub
from ._toxics import ToxicSpec

__all__ = ["CHUNK_SIZE", "Connection", "Link", "unpace_local"]

CHUNK_SIZE = 128 * 1024
"""Bytes per ``recv`` when toxics are in the way: four times Toxiproxy's 32 KiB, since each
chunk costs a walk down the chain in Python. A toxic's effect does not depend on how the
stream was cut, except the slicer's piece sizes for writes over 32 KiB (still within the
asked size and variation)."""
_HIGH_WATER = 4 << 20
"""Bytes a link may hold before it stops reading its source: enough for a 1 ms latency toxic
to carry several Gbit/s."""
_LOW_WATER = _HIGH_WATER // 2
_PIPE_SIZE = 1 << 20
_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if _SPLICE else 0
_PACING = frozenset({b"bbr"})
"""Congestion controls that pace every send with a timer when the qdisc does not."""
_UNPACED = (b"cubic", b"reno")
"""Tried in order: Reno is always allowed, CUBIC may not be without CAP_NET_ADMIN
(``net.ipv4.tcp_allowed_congestion_control``)."""
_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF, errno.ETIMEDOUT})


def _is_local(sock: socket.socket) -> bool:
    """The connection never leaves this host: a loopback peer, or our own address."""
    try:
        local, peer = sock.getsockname()[0], sock.getpeername()[0]
    except (OSError, IndexError):
        return False
    if not isinstance(peer, str):
        return False
    if peer == local:
        return True
    try:
        address = ipaddress.ip_address(peer.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def unpace_local(sock: socket.socket) -> None:
    """Swap a pacing congestion control for an unpaced one on a host-local TCP connection.

    Best effort: where the option or the algorithms are missing, the socket is left as it is.
    """
    option = getattr(socket, "TCP_CONGESTION", None)
    if option is None:
        return
    try:
        current = sock.getsockopt(socket.IPPROTO_TCP, option, 16).rstrip(b"\0")
    except OSError:
        return
    if current not in _PACING or not _is_local(sock):  # one call, then addresses only if paced
        return
    for name in _UNPACED:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, name)
        except OSError:
            continue
        return


class Sink:
    """The end of a link: writes to the destination socket in order, pipe bytes first."""

    def __init__(self, link: Link, sock: socket.socket) -> None:
        self._link = link
        self._sock = sock
        self._loop = link.loop
        self._out: deque[bytes | memoryview] = deque()
        self.pending = 0
        self.pipe: tuple[int, int] | None = None
        self.pipe_size = 0
        self.pipe_bytes = 0
        self.sent = 0
        self._eof = False
        self._writing = False
        self.done = False

    @property
    def idle(self) -> bool:
        """Nothing waits in user space: the splice path may be used."""
        return not self._out and not self._eof

    def open_pipe(self) -> tuple[int, int] | None:
        """The splice pipe, created on first use; None if the system will not give one."""
        if self.pipe is not None:
            return self.pipe
        try:
            read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            self.pipe_size = fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        except OSError:
            self.pipe_size = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        self.pipe = (read_end, write_end)
        return self.pipe

    def put(self, item: Item) -> None:
        """Queue ``item`` for the destination and write what can be written now."""
        if self.done or self._eof:
            return
        if isinstance(item, Chunk):
            if item.data:
                self._out.append(item.data)
                self.pending += len(item.data)
        else:
            self._eof = True
        self.flush()

    def extend(self, items: Iterable[Item]) -> None:
        """Queue several items in order."""
        for item in items:
            self.put(item)

    def flush(self) -> None:
        """Write pipe bytes, then queued chunks, until the socket would block."""
        if self.done:
            return
        fd = self._sock.fileno()
        try:
            while self.pipe_bytes and self.pipe is not None:
                moved = os.splice(self.pipe[0], fd, self.pipe_bytes, flags=_SPLICE_FLAGS)
                self.pipe_bytes -= moved
                self.sent += moved
            while self._out:
                head = self._out[0]
                written = self._sock.send(head)
                self.sent += written
                self.pending -= written
                if written == len(head):
                    self._out.popleft()
                else:
                    self._out[0] = memoryview(head)[written:]
        except (BlockingIOError, InterruptedError):
            self._want_write(True)
            self._link.maybe_resume()
            return
        except OSError:
            self._out.clear()
            self.pending = self.pipe_bytes = 0
            self.done = True
            self._want_write(False)
            self._link.connection.close_socket(self._sock)
            return
        self._want_write(False)
        self._link.maybe_resume()
        if self._eof:
            self.done = True
            self._link.connection.close_socket(self._sock)

    def _want_write(self, wanted: bool) -> None:
        if wanted == self._writing:
            return
        self._writing = wanted
        if wanted:
            self._loop.add_writer(self._sock.fileno(), self.flush)
        else:
            self._loop.remove_writer(self._sock.fileno())

    def shut(self) -> None:
        """Stop writing and release the pipe (the socket is closed by the connection)."""
        self.done = True
        if self._writing and self._sock.fileno() >= 0:
            self._loop.remove_writer(self._sock.fileno())
        self._writing = False
        self._out.clear()
        self.pending = 0
        if self.pipe is not None:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None
            self.pipe_bytes = 0


class Link:
    """One direction of a connection: source socket → toxic stubs → sink → destination."""

    def __init__(
        self,
        connection: Connection,
        source: socket.socket,
        destination: socket.socket,
        toxics: Iterable[ToxicSpec],
        *,
        upstream: bool,
    ) -> None:
        self.connection = connection
        self.loop = connection.loop
        self.upstream = upstream
        self.source = source
        self.sink = Sink(self, destination)
        self.head: Outlet = self.sink
        self.stubs: list[Stub] = []
        self.received = 0
        self._reading = False
        self._paused = False
        self._ended = False
        self._splice = _SPLICE
        for spec in toxics:
            self._append(spec)

    @property
    def direction(self) -> str:
        """``upstream`` (client to server) or ``downstream``."""
        return "upstream" if self.upstream else "downstream"

    def start(self) -> None:
        """Start the stubs and begin reading the source."""
        for stub in self.stubs:
            stub.start()
        self._read(True)

    # -- chain changes (synchronous, so nothing moves while they happen) -----------------------

    def _channel(self) -> Channel:
        return Channel(self.maybe_resume)

    def _append(self, spec: ToxicSpec) -> Stub:
        channel = self._channel()
        if self.stubs:
            self.stubs[-1].output = channel
        else:
            self.head = channel
        stub = Stub(spec, channel, self.sink, self.connection.rng)
        self.stubs.append(stub)
        return stub

    def add(self, spec: ToxicSpec) -> None:
        """Append a toxic to the chain; the previous last toxic restarts (and re-rolls)."""
        if self._ended and self.sink.done:
            return
        previous = self.stubs[-1] if self.stubs else None
        stub = self._append(spec)
        if previous is not None:
            previous.restart()
        stub.start()
        self.maybe_resume()

    def update(self, name: str) -> None:
        """The toxic's attributes changed: restart its stub with them."""
        for stub in self.stubs:
            if stub.spec.name == name:
                stub.restart()

    def remove(self, name: str) -> None:
        """Take a toxic out: what it held passes on at once (or the connection closes)."""
        index = next((i for i, stub in enumerate(self.stubs) if stub.spec.name == name), None)
        if index is None:
            return
        stub = self.stubs.pop(index)
        items = stub.interrupt() + stub.input.drain()
        if stub.spec.kind.closes_on_removal and not stub.closed:
            stub.closed = True
            stub.output.put(EOF)
        else:
            stub.output.extend(items)
        if index > 0:
            self.stubs[index - 1].output = stub.output
            self.stubs[index - 1].restart()
        else:
            self.head = stub.output
        self.maybe_resume()

    # -- reading -------------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes read from the source and not yet written to the destination."""
        held = sum(stub.input.nbytes for stub in self.stubs)
        return held + self.sink.pending + self.sink.pipe_bytes

    def maybe_resume(self) -> None:
        """Resume reading once enough of what is buffered has been written."""
        if self._paused and self.buffered() <= _LOW_WATER:
            self._paused = False
            self._read(True)

    def _pause(self) -> None:
        self._paused = True
        self._read(False)

    def _read(self, wanted: bool) -> None:
        wanted = wanted and not self._ended and not self._paused
        if wanted == self._reading:
            return
        self._reading = wanted
        if wanted:
            self.loop.add_reader(self.source.fileno(), self._on_readable)
        else:
            self.loop.remove_reader(self.source.fileno())

    def _on_readable(self) -> None:
        if self._splice and self.head is self.sink and self.sink.idle:
            self._splice_in()
            return
        try:
            data = self.source.recv(CHUNK_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.end()
            return
        self.received += len(data)
        self.head.put(Chunk(data, self.loop.time()))
        if self.buffered() > _HIGH_WATER:
            self._pause()

    def _splice_in(self) -> None:
        sink = self.sink
        pipe = sink.open_pipe()
        if pipe is None:
            self._splice = False
            return
        room = sink.pipe_size - sink.pipe_bytes
        if room <= 0:
            self._pause()
            return
        try:
            moved = os.splice(self.source.fileno(), pipe[1], room, flags=_SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            if error.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                self._splice = False  # not spliceable here: fall back to recv/send
                return
            moved = 0
        if moved == 0:
            self.end()
            return
        self.received += moved
        sink.pipe_bytes += moved
        sink.flush()
        if sink.pipe_bytes >= sink.pipe_size:
            self._pause()

    def end(self) -> None:
        """The source is finished: stop reading and send EOF down the chain."""
        if self._ended:
            return
        self._read(False)
        self._ended = True
        self.head.put(EOF)

    def shut(self) -> None:
        """Stop everything now: reading, every stub, the sink."""
        self._read(False)
        self._ended = True
        for stub in self.stubs:
            stub.interrupt()
        self.sink.shut()


class Connection:
    """A client socket and its upstream socket, with a link each way."""

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        toxics: tuple[list[ToxicSpec], list[ToxicSpec]],
        rng: random.Random,
        on_close: Callable[[Connection], None],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.server = upstream
        self.rng = rng
        self._on_close = on_close
        self._open = {client.fileno(), upstream.fileno()}
        upstream_toxics, downstream_toxics = toxics
        for sock in (client, upstream):
            unpace_local(sock)
        if any(spec.kind.lingers for spec in (*upstream_toxics, *downstream_toxics)):
            linger = struct.pack("ii", 1, 0)
            for sock in (client, upstream):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        self.links = (
            Link(self, client, upstream, upstream_toxics, upstream=True),
            Link(self, upstream, client, downstream_toxics, upstream=False),
        )
        self.closed = False

    def start(self) -> None:
        """Start moving bytes both ways."""
        for link in self.links:
            link.start()

    def link(self, upstream: bool) -> Link:
        """The link in one direction."""
        return self.links[0] if upstream else self.links[1]

    def close_socket(self, sock: socket.socket) -> None:
        """Close one side: the link reading it ends (sending EOF on), the one writing it stops."""
        fd = sock.fileno()
        if fd < 0 or fd not in self._open:
            return
        self._open.discard(fd)
        reader = self.links[0] if sock is self.client else self.links[1]
        writer = self.links[1] if sock is self.client else self.links[0]
        reader.end()
        writer.sink.shut()
        sock.close()  # no shutdown() first: with SO_LINGER 0 set, close() must send RST
        if not self._open:
            self._finish()

    def abort(self) -> None:
        """Close both sockets now, dropping whatever is in flight (proxy disabled or deleted)."""
        for link in self.links:
            link.shut()
        for sock in (self.client, self.server):
            if sock.fileno() >= 0:
                sock.close()
        self._open.clear()
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        for link in self.links:
            link.shut()
        self._on_close(self)
