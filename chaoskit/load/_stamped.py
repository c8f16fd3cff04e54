"""A plain TCP transport whose reads carry the kernel's receive time.

An answer's latency ends when its last bytes reached the machine, not when the event loop got
round to reading them: between the two lie the loop's wake-up (tens of µs on a small virtual
machine), whatever callback it was running (at high rates, the timer spinning towards the next
send) and asyncio's read path. On Linux each socket asks for a receive timestamp
(``SO_TIMESTAMPNS``), and each read with ``recvmsg`` brings the time the last segment read
arrived, on the realtime clock, which is moved onto the monotonic clock by the difference
between the two clocks at the read. Elsewhere, or if the kernel gives no timestamp, a read is
stamped with the monotonic clock when it is read.

Written by hand because asyncio's transports drop a read's ancillary data, and no library
offers a stream transport that keeps it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import platform
import socket
import struct
import sys
import time
from typing import Any, TypeVar

__all__ = ["StampedProtocol", "connect", "kernel_stamps"]

_SO_TIMESTAMPNS = 35
"""``SO_TIMESTAMPNS`` (and ``SCM_TIMESTAMPNS``) in the generic Linux ABI; Python 3.11 does not
name it. Alpha, PA-RISC and SPARC number it otherwise, so they go without."""
_GENERIC_ABI = {"x86_64", "i686", "i386", "aarch64", "arm64", "armv7l", "riscv64", "s390x",
                "ppc64le", "ppc64", "loongarch64"}  # fmt: skip
_TIMESPEC = struct.Struct("@ll")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 64
_P = TypeVar("_P", bound="StampedProtocol")
_READ = 65_536
"""Bytes asked of each read."""


def kernel_stamps() -> bool:
    """Whether sockets here can be asked for the kernel's receive timestamps (only then is
    :func:`connect` to be used)."""
    return sys.platform.startswith("linux") and platform.machine() in _GENERIC_ABI


class StampedProtocol(asyncio.Protocol):
    """An asyncio protocol that takes each read with the time it arrived: from a stamped
    transport, the kernel's; from any other, the monotonic clock's when it was read."""

    def data_received(self, data: bytes) -> None:
        self.data_arrived(data, time.monotonic())

    def data_arrived(self, data: bytes, arrived: float) -> None:
        """``data`` was read; its last byte reached the machine at monotonic ``arrived``."""
        raise NotImplementedError


class _StampedTransport(asyncio.Transport):
    """A connected non-blocking TCP socket read with ``recvmsg``, written with ``send``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StampedProtocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._peer = sock.getpeername()
        self._unsent: collections.deque[memoryview] = collections.deque()
        self._closing = False
        self._closed = False
        protocol.connection_made(self)
        loop.add_reader(self._fd, self._readable)

    # -- asyncio.Transport ----------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "peername":
            return self._peer
        return default

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        view = memoryview(bytes(data))
        if not self._unsent:
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._lose(error)
                return
            view = view[sent:]
            if not view:
                return
            self._loop.add_writer(self._fd, self._writable)
        self._unsent.append(view)

    def close(self) -> None:
        """Stop reading; close once what was written has left."""
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._unsent:
            self._lose(None)

    def abort(self) -> None:
        """Close now, dropping what was not sent yet."""
        self._closing = True
        self._unsent.clear()
        self._lose(None)

    # -- the event loop's side ------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self._sock.recvmsg(_READ, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(error)
            return
        now, wall = time.monotonic(), time.time_ns()  # together: one maps onto the other
        if not data:  # the peer closed: so does this side (no half-closed connections)
            self._protocol.eof_received()
            self._closing = True
            self._lose(None)
            return
        arrived = now
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                age = wall - (seconds * 1_000_000_000 + nanoseconds)
                if age >= 0:  # else the wall clock was stepped back: keep the read's time
                    arrived = now - age / 1e9
        try:
            self._protocol.data_arrived(data, arrived)
        except Exception as error:  # as asyncio's transports do: close, and let the loop log it
            self._lose(error)
            raise

    def _writable(self) -> None:
        while self._unsent:
            view = self._unsent[0]
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._lose(error)
                return
            if sent < len(view):
                self._unsent[0] = view[sent:]
                return
            self._unsent.popleft()
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._lose(None)

    def _lose(self, error: Exception | None) -> None:
        """Close the socket, once, and tell the protocol soon after (as asyncio does)."""
        if self._closed:
            return
        self._closed = self._closing = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._unsent.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, error)


async def connect(host: str, port: int, protocol: _P) -> tuple[asyncio.Transport, _P]:
    """Connect to ``host:port`` (each address it resolves to, in turn) and read it through a
    stamped transport, as ``loop.create_connection`` would; raises the last ``OSError``."""
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure = OSError(f"{host} resolves to no address")
    for family, kind, number, _, address in addresses:
        sock = socket.socket(family, kind, number)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):  # refused (a sandboxed kernel): stamped at read
                sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            await loop.sock_connect(sock, address)
        except OSError as error:
            sock.close()
            failure = error
            continue
        except BaseException:
            sock.close()
            raise
        try:
            return _StampedTransport(loop, sock, protocol), protocol
        except BaseException:
            sock.close()
            raise
    raise failure
