"""The embedded proxy on a loopback port, a controllable upstream, and socket helpers."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from echo import Echo

from chaoskit.proxy import ProxyServer, run_in_thread

_opened: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    """Close every socket a test opened through these helpers."""
    yield
    while _opened:
        _opened.pop().close()


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    """A fresh embedded server (own event loop, background thread) with a fixed seed."""
    with run_in_thread(seed=1234) as running:
        yield running


@pytest.fixture
def api(server: ProxyServer) -> Iterator[httpx.Client]:
    """An HTTP client for the server's API."""
    with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client:
        yield client


class Upstream:
    """A real TCP server whose accepted sockets the test drives by hand."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.listener.settimeout(0.05)
        self._accepted: queue.Queue[socket.socket] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._accepted.put(sock)

    def accept(self, timeout: float = 5) -> socket.socket:
        """The next connection the proxy made to us."""
        sock = self._accepted.get(timeout=timeout)
        _opened.append(sock)
        sock.settimeout(timeout)
        return sock

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self.listener.close()
        while not self._accepted.empty():
            self._accepted.get().close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    running = Upstream()
    yield running
    running.close()


@pytest.fixture
def echo() -> Iterator[Echo]:
    running = Echo()
    yield running
    running.listener.close()


def create_proxy(api: httpx.Client, upstream: str, name: str = "p", **fields: Any) -> int:
    """Create a proxy on a free loopback port in front of ``upstream``; return its port."""
    response = api.post(
        "/proxies", json={"name": name, "listen": "127.0.0.1:0", "upstream": upstream, **fields}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["listen"].rsplit(":", 1)[1])


def add_toxic(api: httpx.Client, proxy: str = "p", **body: Any) -> dict[str, Any]:
    response = api.post(f"/proxies/{proxy}/toxics", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def connect(port: int, timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    _opened.append(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def recv_until_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for ``payload`` to go out and come back."""
    start = time.perf_counter()
    sock.sendall(payload)
    recv_exactly(sock, len(payload))
    return time.perf_counter() - start


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
