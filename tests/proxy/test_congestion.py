"""Host-local proxied connections are not paced a second time: BBR gives way to CUBIC or Reno."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from chaoskit.proxy._connection import unpace_local

from .conftest import Upstream, connect, create_proxy

TCP_CONGESTION: int | None = getattr(socket, "TCP_CONGESTION", None)

pytestmark = pytest.mark.skipif(TCP_CONGESTION is None, reason="no TCP_CONGESTION here")


def congestion(sock: socket.socket) -> bytes:
    assert TCP_CONGESTION is not None
    return sock.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0")


def choose(sock: socket.socket, name: bytes) -> None:
    assert TCP_CONGESTION is not None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, name)
    except OSError as error:
        pytest.skip(f"congestion control {name.decode()} unavailable: {error}")


@pytest.fixture
def accepted() -> Iterator[socket.socket]:
    """The accepting end of a loopback TCP connection."""
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()[:2]),
    ):
        sock, _ = listener.accept()
        with sock:
            yield sock


def test_bbr_on_loopback_becomes_unpaced(accepted: socket.socket) -> None:
    choose(accepted, b"bbr")
    unpace_local(accepted)
    assert congestion(accepted) in (b"cubic", b"reno")


def test_an_unpaced_choice_is_kept(accepted: socket.socket) -> None:
    choose(accepted, b"reno")
    unpace_local(accepted)
    assert congestion(accepted) == b"reno"


def test_an_unconnected_socket_is_left_alone() -> None:
    with socket.socket() as sock:
        choose(sock, b"bbr")
        unpace_local(sock)
        assert congestion(sock) == b"bbr"


def proxy_socket(peer: socket.socket) -> socket.socket:
    """A duplicate of the in-process proxy's socket whose far end is ``peer``."""
    wanted = (peer.getsockname(), peer.getpeername())
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:  # the directory listing's own descriptor, closed by now
            continue
        try:
            sock = socket.socket(fileno=fd)
        except OSError:  # not a socket
            os.close(fd)
            continue
        try:
            if (
                sock.type == socket.SOCK_STREAM
                and (sock.getpeername(), sock.getsockname()) == wanted
            ):
                return sock
        except OSError:
            pass
        sock.close()
    raise AssertionError(f"no socket connected to {wanted[0]}")


def test_the_proxy_unpaces_both_sockets(api: httpx.Client, upstream: Upstream) -> None:
    with socket.socket() as fresh:
        if congestion(fresh) not in (b"bbr",):
            pytest.skip("the system default congestion control does not pace")
    client = connect(create_proxy(api, upstream.address))
    server = upstream.accept()
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    for peer in (client, server):
        with proxy_socket(peer) as sock:
            assert congestion(sock) in (b"cubic", b"reno")
