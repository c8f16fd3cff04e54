"""One proxy: a listener, the upstream it dials per connection, its toxics and live connections."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import socket
from collections.abc import Callable
from typing import Any

from ._addresses import AddressError, Endpoint, format_hostport, resolve, split_hostport
from ._connection import Connection, Link
from ._toxics import ToxicSpec

__all__ = ["Proxy"]

log = logging.getLogger("chaoskit.proxy")

LinkEnded = Callable[["Proxy", Link], None]


def _go_error(error: OSError) -> str:
    text = os.strerror(error.errno) if error.errno else str(error)
    return text[:1].lower() + text[1:]


class Proxy:
    """A TCP proxy in front of ``upstream``; toxics apply to live and future connections."""

    def __init__(
        self,
        name: str,
        listen: str,
        upstream: str,
        *,
        rng: random.Random,
        on_link_end: LinkEnded | None = None,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self.upstream_toxics: list[ToxicSpec] = []
        self.downstream_toxics: list[ToxicSpec] = []
        self._rng = rng
        self._on_link_end = on_link_end
        self._listener: socket.socket | None = None
        self._connections: set[Connection] = set()
        self._dials: set[asyncio.Task[None]] = set()

    def to_json(self) -> dict[str, Any]:
        """The proxy as the API shows it, keys in the real server's order."""
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "Logger": {},
            "toxics": [toxic.to_json() for toxic in self.toxics()],
        }

    @property
    def connections(self) -> int:
        """How many connections are open through it now."""
        return len(self._connections)

    # -- listening -----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (if not already); the concrete address is written back to ``listen``."""
        if self._listener is not None:
            return
        try:
            endpoint = resolve(self.listen)
        except AddressError as error:
            raise AddressError(f"listen tcp: {error}") from None
        listener = self._bind(endpoint)
        loop = asyncio.get_running_loop()
        loop.add_reader(listener.fileno(), self._accept)
        self._listener = listener
        self.enabled = True

    def _bind(self, endpoint: Endpoint) -> socket.socket:
        wildcard = endpoint.host in ("", "0.0.0.0", "::")
        attempts: list[tuple[socket.AddressFamily, str]] = (
            [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
            if wildcard
            else [(endpoint.family, endpoint.host)]
        )
        error: OSError | None = None
        for family, host in attempts:
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as failed:  # no IPv6 here: fall back to IPv4 for the wildcard
                error = failed
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and wildcard:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind((host, endpoint.port))
                sock.listen(socket.SOMAXCONN)
                sock.setblocking(False)
            except OSError as failed:
                sock.close()
                raise AddressError(f"listen tcp {endpoint}: bind: {_go_error(failed)}") from None
            port = sock.getsockname()[1]
            self.listen = format_hostport("::" if wildcard else host, port)
            return sock
        raise AddressError(f"listen tcp {endpoint}: socket: {_go_error(error or OSError())}")

    def stop(self) -> None:
        """Stop listening and close every connection; toxics are kept."""
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        self.enabled = False
        for task in list(self._dials):
            task.cancel()
        for connection in list(self._connections):
            connection.abort()

    def _accept(self) -> None:
        if self._listener is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("proxy %s: accept failed: %s", self.name, _go_error(error))
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rng = random.Random(self._rng.getrandbits(64))
            task = loop.create_task(self._dial(client, rng))
            self._dials.add(task)
            task.add_done_callback(self._dials.discard)

    async def _dial(self, client: socket.socket, rng: random.Random) -> None:
        server: socket.socket | None = None
        try:
            server = await self._connect()
        except asyncio.CancelledError:
            client.close()
            raise
        except OSError as error:
            log.info("proxy %s: upstream %s unreachable: %s", self.name, self.upstream, error)
            client.close()
            return
        if not self.enabled:
            client.close()
            server.close()
            return
        connection = Connection(
            client,
            server,
            (list(self.upstream_toxics), list(self.downstream_toxics)),
            rng,
            self._closed,
        )
        self._connections.add(connection)
        connection.start()

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        host, port_text = split_hostport(self.upstream)
        port = int(port_text) if port_text.isdigit() else socket.getservbyname(port_text, "tcp")
        try:
            ipaddress.ip_address(host)
            targets: list[tuple[socket.AddressFamily, tuple[str, int]]] = [
                (socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))
            ]
        except ValueError:
            infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
            targets = [(info[0], (str(info[4][0]), int(info[4][1]))) for info in infos]
        error: OSError = OSError(f"no address for {self.upstream}")
        for family, address in targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except OSError as failed:
                sock.close()
                error = failed
                continue
            except BaseException:
                sock.close()
                raise
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        raise error

    def _closed(self, connection: Connection) -> None:
        self._connections.discard(connection)
        if self._on_link_end is not None:
            for link in connection.links:
                self._on_link_end(self, link)

    # -- toxics --------------------------------------------------------------------------------

    def toxics(self) -> list[ToxicSpec]:
        """Every toxic: upstream ones first, then downstream, each in insertion order."""
        return [*self.upstream_toxics, *self.downstream_toxics]

    def toxic(self, name: str) -> ToxicSpec | None:
        """The toxic called ``name``, in either stream."""
        return next((toxic for toxic in self.toxics() if toxic.name == name), None)

    def add_toxic(self, spec: ToxicSpec) -> None:
        """Add a toxic; it applies to open connections at once."""
        (self.upstream_toxics if spec.upstream else self.downstream_toxics).append(spec)
        for connection in list(self._connections):
            connection.link(spec.upstream).add(spec)

    def toxic_changed(self, spec: ToxicSpec) -> None:
        """A toxic's attributes or toxicity changed: open connections pick it up now."""
        for connection in list(self._connections):
            connection.link(spec.upstream).update(spec.name)

    def remove_toxic(self, spec: ToxicSpec) -> None:
        """Remove a toxic; what it held is delivered at once (a timeout closes instead)."""
        (self.upstream_toxics if spec.upstream else self.downstream_toxics).remove(spec)
        for connection in list(self._connections):
            connection.link(spec.upstream).remove(spec.name)

    def remove_all_toxics(self) -> None:
        """Remove every toxic."""
        for spec in self.toxics():
            self.remove_toxic(spec)
