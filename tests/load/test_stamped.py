"""The load generator's connections against real servers on loopback: an answer ends when it
reached the machine (the kernel's receive time), not when a busy event loop read it; writes
larger than the socket's buffer leave whole; https:// goes through asyncio's TLS transport."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable

import pytest
import trustme
from aiohttp import web

from chaoskit.launch import LaunchError
from chaoskit.launch.faketime import process_faketime, write_skew
from chaoskit.load import ErrorClass, LoadGenerator, _stamped
from chaoskit.load._http import Answer, HttpClient
from chaoskit.load._stamped import StampedProtocol, connect, kernel_stamps
from chaoskit.model import Load

from . import ThreadServer

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _answered(client: HttpClient) -> Answer:
    """Send one request on ``client`` and wait for how it ended."""
    ended: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    client.send(ended.set_result)
    return await ended


@pytest.mark.skipif(not kernel_stamps(), reason="receive timestamps are asked of Linux only")
def test_an_answer_ends_when_it_arrived_not_when_a_busy_loop_read_it() -> None:
    """The loop is kept busy from before the answer arrives until 50 ms after: read-time
    stamps would put those 50 ms into the latency, and charge them to the system under test."""
    wrote = threading.Event()
    wrote_at: list[float] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)  # sent at once: the socket's buffer is empty
                wrote_at.append(time.monotonic())
                wrote.set()
        writer.close()

    async def scenario(url: str) -> tuple[float, Answer, float]:
        client = HttpClient(url, timeout=5)
        await _answered(client)  # the connection is open and idle: the next send writes now
        wrote.clear()
        ended: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        sent = time.monotonic()
        client.send(ended.set_result)
        assert wrote.wait(5), "the server did not answer"  # blocks the event loop
        time.sleep(0.05)  # the stimulus: the loop stays busy after the answer arrived
        busy_until = time.monotonic()
        answer = await ended
        client.close()
        return sent, answer, busy_until

    with ThreadServer(handler=answer) as server:
        sent, answered, busy_until = asyncio.run(scenario(server.url()))
    assert answered.status == 200
    assert sent <= answered.end <= wrote_at[-1] + 0.002  # when the server's bytes arrived
    assert answered.end < busy_until - 0.04


def test_a_body_larger_than_the_socket_buffers_leaves_whole() -> None:
    """16 MiB cannot be written at once: the rest waits for the socket to drain."""
    body = bytes(range(256)) * (1 << 16)
    got: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)  # read late, so the client's socket fills up
        got.append(await request.read())
        return web.Response(text="ok")

    app = web.Application(client_max_size=len(body) + 1)
    app.router.add_post("/", record)

    async def scenario(url: str) -> Answer:
        client = HttpClient(url, method="POST", body=body, timeout=10)
        try:
            return await _answered(client)
        finally:
            client.close()

    with ThreadServer(app) as server:
        answered = asyncio.run(scenario(server.url()))
    assert answered.status == 200, answered.message
    assert len(got) == 1 and hashlib.sha256(got[0]).digest() == hashlib.sha256(body).digest()


def test_https_goes_through_asyncio_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # the client trusts the CA

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    with ThreadServer(app, tls=context) as server:
        spec = Load.model_validate({"url": server.url("/", host="localhost"), "rate": "50/s"})
        samples = asyncio.run(LoadGenerator(spec).run(0.2))
    window = samples.window()
    assert len(window) == 10 and window.count(ErrorClass.NONE) == 10, samples.first_errors


class _Recorder(StampedProtocol):
    def data_arrived(self, data: bytes, arrived: float) -> None:
        pass


def test_connect_tries_each_address_a_name_resolves_to() -> None:
    """No name here resolves to two addresses, so the resolver's answer is replaced (the one
    stand-in in this file): a port that refuses, then one that listens."""
    with socket.socket() as refusing, socket.socket() as listening:
        refusing.bind(("127.0.0.1", 0))
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        addresses = [refusing.getsockname(), listening.getsockname()]

        async def scenario() -> tuple[object, type[BaseException] | None]:
            async def resolve(*_: object, **__: object) -> list[tuple[object, ...]]:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", a) for a in addresses]

            asyncio.get_running_loop().getaddrinfo = resolve  # type: ignore[method-assign]
            transport, _ = await connect("two.example", 80, _Recorder())
            peer = transport.get_extra_info("peername")
            transport.close()
            addresses.pop()  # only the port that refuses is left
            try:
                await connect("two.example", 80, _Recorder())
            except OSError as error:
                return peer, type(error)
            return peer, None

        peer, failure = asyncio.run(scenario())
        assert peer == listening.getsockname()
    assert failure is ConnectionRefusedError  # the last address's error


_UNDER_SKEW = """
import asyncio, json, sys
from chaoskit.load import LoadGenerator
from chaoskit.model import Load
spec = Load.model_validate({"url": sys.argv[1], "rate": "50/s"})
window = asyncio.run(LoadGenerator(spec).run(0.4)).window()
print(json.dumps([len(window), float(window.latency.min()), float(window.latency.max())]))
"""


def _answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
    async def answer() -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(ANSWER)
        writer.close()

    return answer()


@pytest.mark.skipif(not kernel_stamps(), reason="receive timestamps are asked of Linux only")
def test_a_wall_clock_a_day_ahead_of_the_kernels_never_moves_a_latency(
    tmp_path: pathlib.Path,
) -> None:
    """The kernel stamps reads on the real wall clock; a generator whose own wall clock is a
    day ahead (under libfaketime, or stepped) would date every answer before its request, and
    keeps the read's monotonic time instead. libfaketime also refuses the timer's timerfd,
    which falls back to asyncio's timers."""
    try:
        env = process_faketime(tmp_path / "skew")
    except LaunchError as error:
        pytest.skip(str(error))
    write_skew(tmp_path / "skew", 86_400)
    with ThreadServer(handler=_answer_all) as server:
        done = subprocess.run(
            [sys.executable, "-c", _UNDER_SKEW, server.url()],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    count, shortest, longest = json.loads(done.stdout)
    assert count == 20
    assert 0 < shortest <= longest < 60  # a day off would be 86,400 s either way; a loaded
    # machine can hold a request for seconds


class _DayBehind:
    """The wall clock a day behind the kernel's: a stand-in, because libfaketime with a
    negative offset hangs asyncio's event loop, and the machine's own clock is not ours to
    step."""

    monotonic = staticmethod(time.monotonic)

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() - 86_400 * 1_000_000_000


@pytest.mark.skipif(not kernel_stamps(), reason="receive timestamps are asked of Linux only")
def test_a_wall_clock_behind_the_kernels_never_dates_an_answer_in_the_future(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario(url: str) -> tuple[float, Answer]:
        client = HttpClient(url, timeout=5)
        await _answered(client)
        sent = time.monotonic()
        answered = await _answered(client)
        client.close()
        return sent, answered

    monkeypatch.setattr(_stamped, "time", _DayBehind)
    with ThreadServer(handler=_answer_all) as server:
        sent, answered = asyncio.run(scenario(server.url()))
    assert answered.status == 200
    assert sent < answered.end < time.monotonic()
