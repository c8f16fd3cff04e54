"""The open-loop generator against real HTTP servers on loopback: the rate is held, latency
counts from the due time through a stall, errors are classified, max_in_flight is honoured."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time

import numpy as np
import pytest
from aiohttp import web

from chaoskit.load import ErrorClass, LoadConfigError, LoadGenerator, RequestSamples
from chaoskit.load._http import OPENING, Answer, HttpClient
from chaoskit.model import Load

from . import ThreadServer


class Backend:
    """A trivial HTTP server with a few misbehaviours on request."""

    def __init__(self, stall_at: int | None = None, stall: float = 0.0) -> None:
        self.count = 0
        self.stall_at = stall_at
        self.stall = stall
        self.stalled: tuple[float, float] | None = None
        self.stalled_event = threading.Event()
        self.app = web.Application()
        self.app.router.add_get("/ok", self.ok)
        self.app.router.add_get("/fail", self.fail)
        self.app.router.add_get("/slow", self.slow)

    async def ok(self, request: web.Request) -> web.Response:
        self.count += 1
        if self.count == self.stall_at:
            began = time.monotonic()
            time.sleep(self.stall)  # blocks the whole server, as a GC pause or a freeze would
            self.stalled = (began, time.monotonic())
            self.stalled_event.set()
        return web.Response(text="ok", headers={"X-Backend": f"backend-{self.count % 2 + 1}"})

    async def fail(self, request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")


def load(url: str, rate: str, **extra: object) -> Load:
    return Load.model_validate({"url": url, "rate": rate, **extra})


def run(generator: LoadGenerator, duration: float) -> RequestSamples:
    return asyncio.run(generator.run(duration))


def test_the_rate_is_held_in_wall_clock_time() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:

        async def scenario() -> tuple[LoadGenerator, float]:
            generator = LoadGenerator(load(server.url("/ok"), "400/s"))
            task = asyncio.create_task(generator.run())
            await asyncio.sleep(3.0)  # the measured interval itself, not a synchronisation
            generator.stop()
            stopped = time.monotonic()
            await task
            assert generator.start is not None
            return generator, stopped - generator.start

        generator, elapsed = asyncio.run(scenario())
    window = generator.samples.window()
    expected = 400 * elapsed
    assert window.count(ErrorClass.NONE) == len(window) == backend.count
    assert abs(backend.count - expected) <= 0.03 * expected
    # Lag is measured from each request's intended time, so it is never negative; how small it
    # stays is a property of the machine, printed by benchmarks/load.py rather than asserted.
    assert float(window.send_lag.min()) >= 0.0
    per_second = generator.samples.window(window.start, window.start + 3.0).throughput(1.0)
    assert per_second.size == 3
    assert np.all(np.abs(per_second[:2] - 400) <= 40), per_second


def test_latency_counts_from_the_due_time_through_a_stall() -> None:
    backend = Backend(stall_at=100, stall=0.5)  # request 100 is due 0.5 s in, at 200/s
    with ThreadServer(backend.app) as server:
        samples = run(LoadGenerator(load(server.url("/ok"), "200/s", timeout="3s")), 2.0)
    assert backend.stalled is not None
    began, ended = backend.stalled
    window = samples.window()
    assert window.count(ErrorClass.NONE) == len(window) == 400
    during = (window.due > began + 0.01) & (window.due < ended - 0.05)
    assert during.sum() >= 70  # ~0.44 s of requests at 200/s: every one of them waited
    waited = ended - window.due[during]
    assert np.all(window.latency[during] >= waited - 0.01)
    assert np.count_nonzero(window.latency > 0.25) >= 40
    assert float(np.percentile(window.latency, 99)) > 0.3
    before = window.latency[window.due < began - 0.05]
    assert float(np.median(before)) < 0.05


def _refused_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connecting to it is refused."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    return holder, holder.getsockname()[1]


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SPEAK FRIEND\r\nand enter\r\n\r\n")
    await writer.drain()
    writer.close()


def _outcomes(url: str, duration: float = 0.2, **extra: object) -> RequestSamples:
    return run(LoadGenerator(load(url, "50/s", **extra)), duration)


def test_errors_are_classified() -> None:
    holder, port = _refused_port()
    with holder:
        refused = _outcomes(f"http://127.0.0.1:{port}/")
    backend = Backend()
    with ThreadServer(backend.app) as server:
        timed_out = _outcomes(server.url("/slow"), timeout="200ms")
        failed = _outcomes(server.url("/fail"))
    with ThreadServer(handler=_reset) as server:
        reset = _outcomes(server.url("/"))
    with ThreadServer(handler=_garbage) as server:
        garbage = _outcomes(server.url("/"))

    for samples, kind in [
        (refused, ErrorClass.CONNECT),
        (timed_out, ErrorClass.TIMEOUT),
        (failed, ErrorClass.HTTP_5XX),
        (reset, ErrorClass.RESET),
        (garbage, ErrorClass.PROTOCOL),
    ]:
        window = samples.window()
        assert len(window) == 10
        assert window.count(kind) == 10, (kind, window.error, samples.first_errors)
        assert window.errors().all()  # each counts under the default 5xx/timeout/connect
        assert kind.label in samples.first_errors
    assert "cannot connect to 127.0.0.1" in refused.first_errors["connect"]
    assert "Connection refused" in refused.first_errors["connect"]
    assert np.all(failed.window().status == 503)
    slow = timed_out.window().latency
    assert np.all((slow >= 0.19) & (slow < 1.0))
    assert failed.window().errors(["timeout"]).sum() == 0


def test_a_host_that_cannot_be_reached_is_named_as_the_user_wrote_it() -> None:
    """A name that does not resolve says so (not "Unknown error -2"); an IPv6 literal keeps
    its brackets."""
    unnamed = _outcomes("http://no-such-host.invalid/", timeout="5s")  # never resolves
    assert unnamed.window().count(ErrorClass.CONNECT) == 10
    assert unnamed.first_errors["connect"].startswith("cannot resolve no-such-host.invalid: ")
    assert "Unknown error" not in unnamed.first_errors["connect"]
    if socket.has_ipv6:
        six = _outcomes("http://[::1]:9/")
        assert six.first_errors["connect"].startswith("cannot connect to [::1]:9: ")


def test_max_in_flight_is_honoured_and_overflow_is_recorded_at_its_due_time() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:
        spec = load(server.url("/slow"), "100/s", timeout="300ms", max_in_flight=5)
        samples = run(LoadGenerator(spec), 1.0)
    window = samples.window()
    assert len(window) == 100
    assert np.allclose(np.diff(window.due), 0.01)
    sent = window.error != ErrorClass.OVERLOAD
    assert 10 <= sent.sum() <= 25
    assert np.all(window.error[sent] == ErrorClass.TIMEOUT)
    assert np.all(np.isnan(window.latency[~sent])) and np.all(window.status[~sent] == 0)
    starts, ends = window.due[sent], (window.due + window.latency)[sent]
    most = max(int(np.sum((starts <= t) & (ends > t))) for t in starts)
    assert most <= 5
    assert window.errors([]).sum() == (~sent).sum()  # not sent always counts as an error
    assert "max_in_flight" in samples.first_errors["overload"]


def test_requests_are_tagged_by_the_group_header() -> None:
    def group_of(backend: str | None) -> str | None:
        return {"backend-1": "experiment", "backend-2": "control"}.get(backend or "")

    backend = Backend()
    with ThreadServer(backend.app) as server:
        spec = load(server.url("/ok"), "100/s", group_header="X-Backend")
        tagged = run(LoadGenerator(spec, group_of=group_of), 0.5)
        raw = run(LoadGenerator(spec), 0.2)
        untagged = run(LoadGenerator(load(server.url("/ok"), "100/s")), 0.1)
    experiment = tagged.window(group="experiment")
    control = tagged.window(group="control")
    assert len(experiment) + len(control) == 50
    assert abs(len(experiment) - len(control)) <= 2
    assert len(tagged.window(group=["control", "experiment"])) == 50
    assert set(raw.group_names) == {"backend-1", "backend-2"}
    assert untagged.group_names == () and np.all(untagged.window().group == -1)


def test_a_failing_group_callable_stops_the_run_with_its_error() -> None:
    def broken(backend: str | None) -> str | None:
        raise KeyError(backend)

    backend = Backend()
    with ThreadServer(backend.app) as server:
        spec = load(server.url("/ok"), "100/s", group_header="X-Backend")
        with pytest.raises(KeyError):
            run(LoadGenerator(spec, group_of=broken), 5.0)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:${ports.frontend}/items", "placeholder '${ports.frontend}'"),
        ("ftp://127.0.0.1/items", "http:// or https://"),
        ("items", "http:// or https://"),
    ],
)
def test_a_url_the_generator_cannot_use_is_refused(url: str, words: str) -> None:
    with pytest.raises(LoadConfigError, match="load 'url'") as caught:
        LoadGenerator(load(url, "10/s"))
    assert words in str(caught.value)


def test_a_generator_runs_once_and_rejects_a_bad_duration() -> None:
    generator = LoadGenerator(load("http://127.0.0.1:9/", "10/s"))
    with pytest.raises(ValueError, match="duration"):
        run(generator, 0.0)
    holder, port = _refused_port()
    with holder:
        once = LoadGenerator(load(f"http://127.0.0.1:{port}/", "10/s"))
        run(once, 0.1)
        with pytest.raises(RuntimeError, match="runs once"):
            run(once, 0.1)


def test_a_generator_stopped_before_it_runs_sends_nothing_and_returns() -> None:
    """A stop signal can land while the system is still coming up, before the load runs."""
    backend = Backend()
    with ThreadServer(backend.app) as server:
        generator = LoadGenerator(load(server.url("/ok"), "100/s"))
        generator.stop()
        samples = asyncio.run(asyncio.wait_for(generator.run(), timeout=10))
    assert len(samples.window()) == 0 and backend.count == 0


def test_cancelling_a_run_leaves_unfinished_requests_out() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:
        generator = LoadGenerator(load(server.url("/slow"), "100/s", timeout="5s"))

        async def scenario() -> None:
            task = asyncio.create_task(generator.run())
            while generator.in_flight < 10:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
    assert generator.samples.pending >= 10
    assert len(generator.samples) == 0 and len(generator.samples.window()) == 0


def test_methods_headers_bodies_and_answers_of_every_shape_are_handled() -> None:
    """POST with a body and headers, HEAD (headers only), chunked answers and a server that
    closes the connection after each answer: all complete, each request seen exactly once."""
    seen: list[tuple[str, str, bytes, str | None]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.path_qs, await request.read(),
                     request.headers.get("X-Token")))  # fmt: skip
        if request.path == "/chunked":
            answer = web.StreamResponse()
            answer.enable_chunked_encoding()
            await answer.prepare(request)
            for part in (b"one ", b"two ", b"three"):
                await answer.write(part)
            await answer.write_eof()
            return answer
        if request.path == "/close":
            return web.Response(text="bye", headers={"Connection": "close"})
        return web.Response(text="hello world" * 100)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    with ThreadServer(app) as server:
        post = load(server.url("/items?q=a%20b"), "50/s", method="POST", body='{"x": 1}',
                    headers={"X-Token": "t"})  # fmt: skip
        posted = run(LoadGenerator(post), 0.2)
        head = run(LoadGenerator(load(server.url("/h"), "50/s", method="HEAD")), 0.2)
        chunked = run(LoadGenerator(load(server.url("/chunked"), "50/s")), 0.2)
        closing = run(LoadGenerator(load(server.url("/close"), "50/s")), 0.2)
    for samples in (posted, head, chunked, closing):
        window = samples.window()
        assert len(window) == 10 and window.count(ErrorClass.NONE) == 10, samples.first_errors
        assert np.all(window.status == 200)
    assert seen[:10] == [("POST", "/items?q=a%20b", b'{"x": 1}', "t")] * 10
    assert [m for m, *_ in seen[10:20]] == ["HEAD"] * 10
    assert len(seen) == 40


def test_a_header_that_would_split_the_request_is_refused() -> None:
    with pytest.raises(LoadConfigError, match="load 'headers'"):
        LoadGenerator(load("http://127.0.0.1:9/", "10/s", headers={"X-A": "1\r\nX-B: 2"}))


def test_a_burst_with_no_free_connection_opens_a_few_at_a_time_and_every_request_ends() -> None:
    """Opening a connection costs far more than sending on one: a burst that found no free
    connection, opening one per request, fell behind its schedule at 10,000/s."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()

    async def burst(url: str) -> tuple[int, list[Answer]]:
        client = HttpClient(url, timeout=5)
        ended: list[Answer] = []
        for _ in range(100):
            client.send(ended.append)
        opening = len(client._opening)
        while len(ended) < 100:
            await asyncio.sleep(0.01)
        client.close()
        return opening, ended

    with ThreadServer(handler=answer) as server:
        opening, ended = asyncio.run(burst(server.url("/")))
    assert opening == OPENING
    assert [a.status for a in ended] == [200] * 100  # the rest waited for one, then went


def test_requests_waiting_for_a_connection_end_at_their_timeout() -> None:
    """A server that never accepts: its backlog takes a connection or two, then connecting
    hangs; each request, sent on one of those or still waiting for one, ends as a timeout."""

    async def burst(port: int) -> list[Answer]:
        client = HttpClient(f"http://127.0.0.1:{port}/", timeout=0.3)
        ended: list[Answer] = []
        for _ in range(20):
            client.send(ended.append)
        while len(ended) < 20:
            await asyncio.sleep(0.01)
        client.close()
        return ended

    with socket.socket() as deaf:
        deaf.bind(("127.0.0.1", 0))
        deaf.listen(0)
        ended = asyncio.run(asyncio.wait_for(burst(deaf.getsockname()[1]), 10))
    assert {a.error for a in ended} == {ErrorClass.TIMEOUT}
    assert any("no connection free or opened within 0.3s" in (a.message or "") for a in ended)
