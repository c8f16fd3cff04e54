"""The load generator's HTTP/1.1 client: keep-alive connections as asyncio protocols, the
request's bytes built once, answers parsed by httptools (llhttp, in C), and no task, future or
object per request. On plain TCP under Linux each answer ends when its last bytes reached the
machine, as the kernel stamped them (:mod:`._stamped`), so the event loop's own delays are not
in the latency; over TLS, or elsewhere, when it was read, a few tens of µs later.

Written by hand because no library sends without per-request machinery: aiohttp's (a task, a
request and a response object) added about 0.25 ms to every latency on a 2-core machine, more
than a trivial server takes to answer, and that would be charged to the system under test.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httptools
from yarl import URL

from ._errors import LoadConfigError
from ._samples import ErrorClass
from ._stamped import StampedProtocol, connect, kernel_stamps

__all__ = ["Answer", "HttpClient", "allow_open_files"]

_SWEEP = 0.02
"""Seconds between checks for requests past their timeout."""

_SPARE_FILES = 64
"""File descriptors kept free beyond one per request in flight (logs, probes, the journal)."""

OPENING = 8
"""Connections opened at once, at most. Opening one costs far more than sending on one, so a
burst that finds no free connection (the first requests, or a stall) waits for the first one
that opens or frees up, instead of opening one per request and falling behind the schedule."""


@dataclass(frozen=True, slots=True)
class Answer:
    """How one request ended: when, its status (0: no answer), error class, group tag."""

    end: float
    status: int = 0
    error: ErrorClass = ErrorClass.NONE
    message: str | None = None
    tag: str | None = None


Done = Callable[[Answer], None]
"""Called once per request, from the event loop, when it has ended."""


def _request_bytes(url: URL, method: str, headers: dict[str, str], body: bytes | None) -> bytes:
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    if not url.is_default_port():
        host = f"{host}:{url.port}"
    lines = [f"{method} {url.raw_path_qs or '/'} HTTP/1.1", f"Host: {host}"]
    given = {name.lower() for name in headers}
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if "user-agent" not in given:
        lines.append("User-Agent: chaoskit-load")
    if "accept" not in given:
        lines.append("Accept: */*")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name or ":" in name:
            raise LoadConfigError(
                f"load 'headers': '{name}' cannot be sent as a header (no line breaks, NUL, or "
                "':' in a name, and no empty name)"
            )
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise LoadConfigError(
            "load 'headers': header values must be Latin-1 text (percent-encode the rest)"
        ) from None
    return head + (body or b"")


class _Connection(StampedProtocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: Done | None = None
        self.sent_at = 0.0
        self.arrived = 0.0
        """When the bytes being parsed arrived: an answer ends when its last bytes did."""
        self.tag: str | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # not a stream: nothing to send on
            transport.close()
            return
        self.transport = transport

    def data_arrived(self, data: bytes, arrived: float) -> None:
        # an answer cannot have arrived before its request left (a wall clock stepped forward)
        self.arrived = arrived if arrived >= self.sent_at else time.monotonic()
        if self.done is None:  # bytes nobody asked for: this connection cannot be trusted
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._finish(ErrorClass.PROTOCOL, f"the answer is not valid HTTP: {error}")
            self._close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._forget(self)
        if self.done is not None:
            why = f"{type(exc).__name__}: {exc}" if exc else "closed before the answer ended"
            self._finish(ErrorClass.RESET, f"the connection broke: {why}")

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.client.group_header is not None and name.lower() == self.client.group_header:
            self.tag = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.client.no_body:  # the answer to a HEAD has headers only
            self.on_message_complete()
            self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        if self.done is None:
            return
        end = self.arrived
        status = self.parser.get_status_code()
        keep = self.parser.should_keep_alive()
        done, tag = self.done, self.tag
        self.done, self.tag = None, None
        error = ErrorClass.NONE
        if status >= 500:
            error = ErrorClass.HTTP_5XX
        elif status >= 400:
            error = ErrorClass.HTTP_4XX
        done(Answer(end, status, error, None, tag))
        if keep:
            self.client._idle(self)
        else:
            self._close()

    # -- the client's side ----------------------------------------------------------------------

    def send(self, request: bytes, done: Done) -> None:
        if self.transport is None:
            raise ConnectionError("send on a connection that is not open")
        self.done = done
        self.sent_at = time.monotonic()
        self.transport.write(request)

    def expire(self, timeout: float) -> None:
        self._finish(ErrorClass.TIMEOUT, f"no complete answer within {timeout:g}s")
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, error: ErrorClass, message: str) -> None:
        done, tag = self.done, self.tag
        self.done, self.tag = None, None
        if done is not None:
            done(Answer(time.monotonic(), 0, error, message, tag))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Sends the same request (one URL, method, headers, body) over a pool of connections.

    :meth:`send` never blocks: it writes on an idle connection at once, or the request waits
    for the first connection that frees up or opens (at most :data:`OPENING` being opened at
    once); its timeout counts the wait. Each request ends exactly once, through the callback it
    was sent with, unless :meth:`close` abandons it.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float,
        group_header: str | None = None,
    ) -> None:
        parsed = URL(url, encoded=False)
        self.host = parsed.raw_host or ""
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if parsed.scheme == "https":
            self.ssl = ssl.create_default_context()
        self.timeout = timeout
        self.group_header = group_header.lower().encode() if group_header else None
        self.no_body = method.upper() == "HEAD"
        self._request = _request_bytes(parsed, method.upper(), headers or {}, body)
        self._idle_connections: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._opening: set[asyncio.Task[None]] = set()
        self._waiting: deque[tuple[float, Done]] = deque()
        """Requests no connection was free for, with when they were sent, oldest first."""
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    def send(self, done: Done) -> None:
        """Send the request now, or as soon as a connection is free; ``done`` hears how it
        ended."""
        if self._sweeper is None:
            self._sweep()
        while self._idle_connections:
            connection = self._idle_connections.pop()
            if connection.transport is not None and not connection.transport.is_closing():
                self._busy.add(connection)
                connection.send(self._request, done)
                return
        self._waiting.append((time.monotonic(), done))
        self._grow()

    def _grow(self) -> None:
        """Open connections for the requests waiting, at most :data:`OPENING` at once."""
        loop = asyncio.get_running_loop()
        while len(self._opening) < min(OPENING, len(self._waiting)) and not self._closed:
            task = loop.create_task(self._open())
            self._opening.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[None]) -> None:
        self._opening.discard(task)
        if self._waiting and not self._closed:
            self._grow()

    async def _open(self) -> None:
        """Open one connection; it takes the request that has waited longest, and a connection
        that cannot be opened ends that request."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if self.ssl is None and kernel_stamps():
                    _, connection = await connect(self.host, self.port, _Connection(self))
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self),
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.host if self.ssl else None,
                    )
        except TimeoutError:
            self._fail_oldest(ErrorClass.TIMEOUT, f"could not connect within {self.timeout:g}s")
            return
        except ssl.SSLError as error:
            self._fail_oldest(ErrorClass.PROTOCOL, f"TLS: {error}")
            return
        except socket.gaierror as error:
            self._fail_oldest(
                ErrorClass.CONNECT, f"cannot resolve {self.host}: {error.strerror or error}"
            )
            return
        except OSError as error:
            where = f"[{self.host}]" if ":" in self.host else self.host
            why = os.strerror(error.errno) if error.errno else str(error)
            self._fail_oldest(ErrorClass.CONNECT, f"cannot connect to {where}:{self.port}: {why}")
            return
        self._idle(connection)

    def _fail_oldest(self, error: ErrorClass, message: str) -> None:
        if self._waiting:
            _, done = self._waiting.popleft()
            done(Answer(time.monotonic(), 0, error, message))

    def _idle(self, connection: _Connection) -> None:
        """A connection is free: it takes the request that has waited longest, if any."""
        self._busy.discard(connection)
        if self._closed or connection.transport is None or connection.transport.is_closing():
            connection._close()
        elif self._waiting:
            since, done = self._waiting.popleft()
            self._busy.add(connection)
            connection.send(self._request, done)
            connection.sent_at = since  # the timeout counts the wait for a connection too
        else:
            self._idle_connections.append(connection)

    def _forget(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection in self._idle_connections:
            self._idle_connections.remove(connection)

    def _sweep(self) -> None:
        """End the requests that have waited past the timeout, then look again shortly."""
        limit = time.monotonic() - self.timeout
        for connection in [c for c in self._busy if c.done is not None and c.sent_at <= limit]:
            connection.expire(self.timeout)
        while self._waiting and self._waiting[0][0] <= limit:
            _, done = self._waiting.popleft()
            done(Answer(time.monotonic(), 0, ErrorClass.TIMEOUT,
                        f"no connection free or opened within {self.timeout:g}s"))  # fmt: skip
        if not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(_SWEEP, self._sweep)

    def close(self) -> None:
        """Close every connection; requests still open end as errors (reset)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in self._opening:
            task.cancel()
        for connection in [*self._idle_connections, *self._busy]:
            if connection.transport is not None:  # abort: a peer that stopped reading (paused)
                connection.transport.abort()  # would keep a closing socket open for ever
        self._idle_connections.clear()


def allow_open_files(in_flight: int) -> None:
    """Raise the soft open-file limit towards one per request ``in_flight`` and
    :data:`_SPARE_FILES` more (never above the hard limit)."""
    needed = in_flight + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
