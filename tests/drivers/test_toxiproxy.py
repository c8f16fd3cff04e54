"""The Toxiproxy driver against the real embedded server (``chaoskit proxy`` as a subprocess):
each fault seen from outside on real sockets through a real upstream, reverts from the journal
record alone (a fresh driver, a fresh process, twice, after the proxy went), exact unit
conversions, clear errors, and which requests are retried."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
from echo import Echo
from pydantic import TypeAdapter

from chaoskit.drivers.base import AppliedFault, DriverError, Target
from chaoskit.drivers.toxiproxy import (
    DEFAULT_URL,
    ToxiproxyClient,
    ToxiproxyDriver,
    ToxiproxyError,
    default_url,
    proxy_target,
    proxy_targets,
)
from chaoskit.model import Fault
from chaoskit.model.faults import BandwidthFault
from chaoskit.units import Bandwidth

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]


def fault(type: str, **fields: object) -> Fault:
    """One fault, validated on its own (the experiment-level checks are tested elsewhere)."""
    return TypeAdapter(Fault).validate_python({"type": type, "target": "t", **fields})


def dead_url() -> str:
    """An API URL nothing listens on (a port just freed)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------------
# The server, a real upstream, proxies between them


@contextlib.contextmanager
def proxy_server(log: Path) -> Iterator[str]:
    """``chaoskit proxy`` on a free loopback port; its API URL, read from its first line."""
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert server.stdout is not None
    line = server.stdout.readline()  # printed once the API listens
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    if found is None:
        server.kill()
        server.wait()
        raise AssertionError(f"no API URL in {line!r}; stderr: {log.read_text()}")
    try:
        yield found.group(0)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0, log.read_text()
        server.stdout.close()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with proxy_server(tmp_path_factory.mktemp("proxy") / "stderr.log") as url:
        yield url


def make_proxy(url: str, upstream: str) -> Proxied:
    name = f"p-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "listen": "127.0.0.1:0", "upstream": upstream}
    created = httpx.post(f"{url}/proxies", json=body, timeout=5, trust_env=False)
    assert created.status_code == 201, created.text
    return Proxied(url, name, int(created.json()["listen"].rsplit(":", 1)[1]))


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.listener.close()


@dataclass
class Proxied:
    """A proxy on the server in front of the echo upstream."""

    url: str
    name: str
    port: int

    @property
    def target(self) -> Target:
        return proxy_target(self.url, self.name)

    def state(self) -> dict[str, Any]:
        """The proxy as the server shows it (raw API, not the client under test)."""
        response = httpx.get(f"{self.url}/proxies/{self.name}", timeout=5, trust_env=False)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def toxics(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in self.state()["toxics"]}


@pytest.fixture
def proxied(api_url: str, echo: Echo) -> Iterator[Proxied]:
    made = make_proxy(api_url, echo.address)
    yield made
    httpx.delete(f"{api_url}/proxies/{made.name}", timeout=5, trust_env=False)


@pytest.fixture
def run() -> Iterator[Run[Any]]:
    """Run coroutines on one event loop for the whole test (a driver's clients live on it)."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture
def driver(run: Run[Any], api_url: str) -> Iterator[ToxiproxyDriver]:
    made = ToxiproxyDriver(api_url)
    yield made
    run(made.aclose())


# --------------------------------------------------------------------------------------------
# Sockets, observed from outside


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    """Seconds for ``payload`` to come back through the echo upstream."""
    start = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {got!r}")
        got += chunk
    assert got == payload
    return time.monotonic() - start


def fastest(sock: socket.socket, tries: int = 3) -> float:
    """The quickest of a few round trips: robust to a busy machine's occasional stall."""
    return min(round_trip(sock) for _ in range(tries))


def closed_by_peer(sock: socket.socket) -> bool:
    """Does the proxy close this connection (EOF or reset) within the socket's timeout?"""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def chaoskit_toxics(proxied: Proxied) -> list[str]:
    return [name for name in proxied.toxics() if name.startswith("chaoskit-")]


SLOW = 0.4  # the latency injected; a baseline round trip on loopback is far below FAST
FAST = 0.2


# --------------------------------------------------------------------------------------------
# Effects seen from outside


def test_latency_slows_round_trips_until_reverted(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    with connect(proxied.port) as sock:
        assert fastest(sock) < FAST
        record = driver.plan(fault("latency", latency="400ms"), proxied.target)
        run(driver.apply(record))
        assert list(proxied.toxics()) == [f"chaoskit-{record.id[:8]}-latency-downstream"]
        slowed = [round_trip(sock) for _ in range(2)]  # the live connection is hit at once
        assert all(SLOW - 0.05 <= s < SLOW + 3 for s in slowed), slowed
        with connect(proxied.port) as fresh:
            assert SLOW - 0.05 <= round_trip(fresh) < SLOW + 3
        run(driver.revert(record))
        assert proxied.toxics() == {}
        assert fastest(sock) < FAST
    with connect(proxied.port) as fresh:
        assert fastest(fresh) < FAST


def test_stream_both_adds_one_toxic_per_direction(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("latency", latency="250ms", stream="both"), proxied.target)
    run(driver.apply(record))
    toxics = proxied.toxics()
    prefix = f"chaoskit-{record.id[:8]}-latency"
    assert {name: t["stream"] for name, t in toxics.items()} == {
        f"{prefix}-upstream": "upstream",
        f"{prefix}-downstream": "downstream",
    }
    with connect(proxied.port) as sock:
        assert 0.5 - 0.05 <= round_trip(sock) < 0.5 + 3  # delayed on the way in and out
    run(driver.revert(record))
    assert proxied.toxics() == {}


def test_partition_hang_stalls_reads_until_reverted(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("partition", mode="hang"), proxied.target)
    assert [t["attributes"] for t in record.params["toxics"]] == [{"timeout": 0}] * 2
    with connect(proxied.port, timeout=0.5) as sock:
        assert fastest(sock) < FAST
        run(driver.apply(record))
        sock.sendall(b"lost")
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        with connect(proxied.port, timeout=0.5) as other:  # connecting works; data does not
            other.sendall(b"lost")
            with pytest.raises(TimeoutError):
                other.recv(65536)
        run(driver.revert(record))
    assert proxied.toxics() == {}
    with connect(proxied.port) as fresh:
        assert fastest(fresh) < FAST


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_one_way_partition_drops_one_direction(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied, echo: Echo, direction: str
) -> None:
    # Inbound drops what the client sends (upstream), outbound what the server answers.
    stream = {"inbound": "upstream", "outbound": "downstream"}[direction]
    record = driver.plan(fault("partition", mode="hang", direction=direction), proxied.target)
    run(driver.apply(record))
    [toxic] = proxied.toxics().values()
    assert (toxic["type"], toxic["stream"], toxic["attributes"]) == (
        "timeout",
        stream,
        {"timeout": 0},
    )
    with connect(proxied.port, timeout=0.5) as sock:
        sock.sendall(b"one-way")
        if direction == "outbound":
            assert echo.received.get(timeout=5) == b"one-way"
        else:
            with pytest.raises(queue.Empty):
                echo.received.get(timeout=0.5)
        with pytest.raises(TimeoutError):  # either way, no answer comes back
            sock.recv(65536)
    run(driver.revert(record))
    assert proxied.toxics() == {}


def test_partition_refuse_refuses_connections_until_reverted(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("partition", mode="refuse"), proxied.target)
    with connect(proxied.port) as sock:
        assert fastest(sock) < FAST
        run(driver.apply(record))
        assert closed_by_peer(sock)  # open connections are cut
    with pytest.raises(ConnectionRefusedError) as refused:
        connect(proxied.port)
    assert refused.value.errno == errno.ECONNREFUSED
    assert proxied.state()["enabled"] is False
    run(driver.revert(record))
    assert proxied.state()["enabled"] is True
    with connect(proxied.port) as fresh:  # on the same port as before
        assert fastest(fresh) < FAST


def test_a_refuse_partition_on_a_disabled_proxy_is_refused_before_it_is_applied(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("partition", mode="refuse"), proxied.target)
    run(driver.check(record))  # enabled: fine
    httpx.post(f"{proxied.url}/proxies/{proxied.name}", json={"enabled": False}, trust_env=False)
    with pytest.raises(DriverError, match=r"disabled already.*taking it back would enable it"):
        run(driver.check(record))
    latency = driver.plan(fault("latency", latency="10ms"), proxied.target)
    run(driver.check(latency))  # toxics on a disabled proxy change nothing on revert
    missing = driver.plan(fault("latency", latency="10ms"), proxy_target(proxied.url, "nope"))
    with pytest.raises(DriverError, match="no proxy 'nope' at"):
        run(driver.check(missing))


def test_limit_data_closes_after_the_limit(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("limit_data", bytes="10B"), proxied.target)
    run(driver.apply(record))
    with connect(proxied.port) as sock:
        sock.sendall(b"x" * 25)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        assert got == b"x" * 10
    run(driver.revert(record))
    with connect(proxied.port) as fresh:
        assert round_trip(fresh, b"x" * 25) < 3


def test_one_driver_drives_several_servers(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied, echo: Echo, tmp_path: Path
) -> None:
    with proxy_server(tmp_path / "second.log") as second_url:
        elsewhere = make_proxy(second_url, echo.address)
        slow = driver.plan(fault("latency", latency="400ms"), proxied.target)
        refused = driver.plan(fault("partition", mode="refuse"), elsewhere.target)
        run(driver.apply(slow))
        run(driver.apply(refused))
        assert chaoskit_toxics(proxied) and elsewhere.toxics() == {}
        assert proxied.state()["enabled"] and not elsewhere.state()["enabled"]
        with connect(proxied.port) as sock:
            assert round_trip(sock) >= SLOW - 0.05
        with pytest.raises(ConnectionRefusedError):
            connect(elsewhere.port)
        run(driver.revert(refused))
        run(driver.revert(slow))
        assert_clean(proxied)
        assert_clean(elsewhere)
        run(driver.aclose())  # closes the clients of both servers


# --------------------------------------------------------------------------------------------
# Reverts from the record alone


REVERTIBLE = [
    pytest.param({"type": "latency", "latency": "400ms", "stream": "both"}, id="latency"),
    pytest.param({"type": "partition", "mode": "hang"}, id="hang"),
    pytest.param({"type": "partition", "mode": "refuse"}, id="refuse"),
]


def assert_clean(proxied: Proxied) -> None:
    state = proxied.state()
    assert state["enabled"] is True
    assert state["toxics"] == []
    with connect(proxied.port) as sock:
        assert fastest(sock) < FAST


@pytest.mark.parametrize("spec", REVERTIBLE)
def test_a_fresh_driver_reverts_from_the_journal_record(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied, spec: dict[str, str]
) -> None:
    record = driver.plan(fault(**spec), proxied.target)
    journal = json.dumps(record.to_json())  # what the runner writes before applying
    run(driver.apply(record))
    assert proxied.state()["enabled"] is False or chaoskit_toxics(proxied)
    # Its own default URL is wrong on purpose: the record must say where the proxy lives.
    fresh = ToxiproxyDriver(dead_url())
    try:
        run(fresh.revert(AppliedFault.from_json(json.loads(journal))))
        assert_clean(proxied)
        run(fresh.revert(AppliedFault.from_json(json.loads(journal))))  # twice is harmless
        run(driver.revert(record))
    finally:
        run(fresh.aclose())
    assert_clean(proxied)


def revert_in_fresh_process(record: AppliedFault) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from chaoskit.drivers.base import AppliedFault\n"
        "from chaoskit.drivers.toxiproxy import ToxiproxyDriver\n"
        "record = AppliedFault.from_json(json.loads(sys.argv[1]))\n"
        "async def main():\n"
        "    async with ToxiproxyDriver() as driver:\n"
        "        await driver.revert(record)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "TOXIPROXY_URL": dead_url()}  # only the record knows the server
    argv = [sys.executable, "-c", code, json.dumps(record.to_json())]
    subprocess.run(argv, check=True, env=env, timeout=30)


@pytest.mark.parametrize("spec", REVERTIBLE)
def test_a_fresh_process_reverts_from_the_journal_record(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied, spec: dict[str, str]
) -> None:
    record = driver.plan(fault(**spec), proxied.target)
    run(driver.apply(record))
    revert_in_fresh_process(record)
    assert_clean(proxied)


@pytest.mark.parametrize("spec", REVERTIBLE)
def test_revert_after_the_proxy_was_deleted_is_fine(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied, spec: dict[str, str]
) -> None:
    record = driver.plan(fault(**spec), proxied.target)
    run(driver.apply(record))
    deleted = httpx.delete(f"{proxied.url}/proxies/{proxied.name}", timeout=5, trust_env=False)
    assert deleted.status_code == 204
    run(driver.revert(record))
    run(driver.revert(record))
    revert_in_fresh_process(record)


def test_revert_removes_only_what_its_apply_added(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    added = httpx.post(
        f"{proxied.url}/proxies/{proxied.name}/toxics",
        json={"type": "latency", "attributes": {"latency": 1}},
        timeout=5,
        trust_env=False,
    )
    assert added.status_code == 200, added.text
    first = driver.plan(fault("latency", latency="10ms"), proxied.target)
    second = driver.plan(fault("latency", latency="10ms"), proxied.target)
    assert first.params["toxics"][0]["name"] != second.params["toxics"][0]["name"]
    run(driver.apply(first))
    run(driver.apply(second))
    run(driver.revert(first))
    assert sorted(proxied.toxics()) == sorted(
        ["latency_downstream", second.params["toxics"][0]["name"]]
    )
    run(driver.revert(second))
    assert list(proxied.toxics()) == ["latency_downstream"]


def test_apply_adds_all_of_a_fault_or_none(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    record = driver.plan(fault("latency", latency="10ms", stream="both"), proxied.target)
    upstream, downstream = (t["name"] for t in record.params["toxics"])
    # Someone already holds the name of the second toxic, so adding it fails (409).
    taken = httpx.post(
        f"{proxied.url}/proxies/{proxied.name}/toxics",
        json={"name": downstream, "type": "latency", "stream": "upstream"},
        timeout=5,
        trust_env=False,
    )
    assert taken.status_code == 200, taken.text
    with pytest.raises(ToxiproxyError) as failed:
        run(driver.apply(record))
    assert (failed.value.status, failed.value.message) == (409, "toxic already exists")
    assert list(proxied.toxics()) == [downstream]  # the first toxic was taken back
    assert upstream not in proxied.toxics()


def test_apply_to_a_missing_proxy_says_so(
    run: Run[Any], driver: ToxiproxyDriver, api_url: str
) -> None:
    for spec in ({"type": "latency", "latency": "1ms"}, {"type": "partition", "mode": "refuse"}):
        record = driver.plan(fault(**spec), proxy_target(api_url, "no-such-proxy"))
        with pytest.raises(ToxiproxyError, match="proxy not found") as missing:
            run(driver.apply(record))
        assert missing.value.status == 404
        assert missing.value.url.startswith(f"{api_url}/proxies/no-such-proxy")
        run(driver.revert(record))  # nothing there: nothing to take back


# --------------------------------------------------------------------------------------------
# Planning: exact units, clear refusals, no side effects


CONVERSIONS = [
    ({"type": "latency", "latency": "1.5s", "jitter": "50ms"}, "latency",
     {"latency": 1500, "jitter": 50}),
    ({"type": "latency", "latency": "0s"}, "latency", {"latency": 0, "jitter": 0}),
    ({"type": "bandwidth", "rate": "100kB/s"}, "bandwidth", {"rate": 100}),
    ({"type": "bandwidth", "rate": "2MB/s"}, "bandwidth", {"rate": 2000}),
    ({"type": "bandwidth", "rate": "125KiB/s"}, "bandwidth", {"rate": 128}),
    ({"type": "slow_close", "delay": "2s"}, "slow_close", {"delay": 2000}),
    ({"type": "timeout", "timeout": "1m"}, "timeout", {"timeout": 60000}),
    ({"type": "timeout"}, "timeout", {"timeout": 0}),
    ({"type": "reset_peer", "timeout": "300ms"}, "reset_peer", {"timeout": 300}),
    ({"type": "slicer", "average_size": "1KiB", "size_variation": "100B", "delay": "1.5ms"},
     "slicer", {"average_size": 1024, "size_variation": 100, "delay": 1500}),
    ({"type": "slicer", "average_size": "64B", "delay": "7us"}, "slicer",
     {"average_size": 64, "size_variation": 0, "delay": 7}),
    ({"type": "limit_data", "bytes": "1MiB"}, "limit_data", {"bytes": 1048576}),
]  # fmt: skip


def test_plan_records_exact_units_and_touches_nothing(
    run: Run[Any], driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    # Planning against a server that does not exist works: plan does no I/O at all.
    nowhere = proxy_target(dead_url(), proxied.name)
    for spec, kind, attributes in CONVERSIONS:
        record = driver.plan(fault(**spec, toxicity=0.5), nowhere)
        [toxic] = record.params["toxics"]
        assert (toxic["type"], toxic["attributes"], toxic["toxicity"]) == (kind, attributes, 0.5)
    records = [driver.plan(fault(**spec), proxied.target) for spec, _, _ in CONVERSIONS]
    assert proxied.toxics() == {}
    # What the server then holds is exactly what was planned.
    for record in records:
        run(driver.apply(record))
    held = proxied.toxics()
    for record, (_, kind, attributes) in zip(records, CONVERSIONS, strict=True):
        toxic = held[record.params["toxics"][0]["name"]]
        assert (toxic["type"], toxic["stream"], toxic["attributes"]) == (
            kind,
            "downstream",
            attributes,
        )
    for record in records:
        run(driver.revert(record))
    assert proxied.toxics() == {}


REFUSED = [
    ({"type": "latency", "latency": "250us"}, "latency '250us' is not a whole number of ms",
     "'0ms' or '1ms'"),
    ({"type": "latency", "latency": "10ms", "jitter": "1500us"},
     "latency jitter '1500us' is not a whole number of ms", "'1ms' or '2ms'"),
    ({"type": "slow_close", "delay": "2.0005s"}, "slow_close delay", "'2000ms' or '2001ms'"),
    ({"type": "timeout", "timeout": "100ns"}, "timeout '100ns'", "'0ms' or '1ms'"),
    ({"type": "reset_peer", "timeout": "1001us"}, "reset_peer timeout", "'1ms' or '2ms'"),
    ({"type": "slicer", "average_size": "10B", "delay": "1500ns"},
     "slicer delay '1500ns' is not a whole number of us", "'1us' or '2us'"),
    ({"type": "bandwidth", "rate": "1MiB/s"},
     "bandwidth rate '1MiB/s' is not a whole number of kB/s", "'1048kB/s' or '1049kB/s'"),
    ({"type": "bandwidth", "rate": "1500B/s"}, "not a whole number of kB/s",
     "'1kB/s' or '2kB/s'"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "what", "fix"), REFUSED)
def test_values_the_api_cannot_take_exactly_are_refused_in_plan(
    driver: ToxiproxyDriver, proxied: Proxied, spec: dict[str, str], what: str, fix: str
) -> None:
    with pytest.raises(DriverError) as refused:
        driver.plan(fault(**spec), proxied.target)
    assert what in str(refused.value)
    assert fix in str(refused.value)
    assert "Toxiproxy" in str(refused.value)


def test_a_bandwidth_below_one_kb_per_second_is_refused(
    driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    # The model refuses it too; the driver must not rely on that (model_construct skips it).
    slow = BandwidthFault.model_construct(type="bandwidth", target="t", rate=Bandwidth(999))
    with pytest.raises(DriverError, match=r"'999B/s' is below 1kB/s"):
        driver.plan(slow, proxied.target)


def test_faults_and_targets_it_cannot_handle_are_refused(
    driver: ToxiproxyDriver, proxied: Proxied
) -> None:
    with pytest.raises(DriverError, match="cannot act on a process target"):
        driver.plan(fault("latency", latency="1ms"), Target("process", "p", {}, {"pid": 1}))
    with pytest.raises(DriverError, match="cannot apply a crash fault"):
        driver.plan(fault("crash"), proxied.target)
    with pytest.raises(DriverError, match="partition mode 'disconnect' needs the docker driver"):
        driver.plan(fault("partition", mode="disconnect"), proxied.target)
    with pytest.raises(DriverError, match="not a Toxiproxy API URL"):
        driver.plan(fault("latency", latency="1ms"), proxy_target("ftp://example", "p"))


def test_the_url_comes_from_the_target_else_the_driver(
    monkeypatch: pytest.MonkeyPatch, api_url: str
) -> None:
    assert default_url({}) == DEFAULT_URL == "http://127.0.0.1:8474"
    assert default_url({"TOXIPROXY_URL": "localhost:9999/"}) == "http://localhost:9999"
    monkeypatch.setenv("TOXIPROXY_URL", "http://10.1.2.3:8474")
    assert ToxiproxyDriver().url == "http://10.1.2.3:8474"
    driver = ToxiproxyDriver(api_url)
    bare = Target("proxy", "backend-1")  # no ref: the driver's URL, the target's name
    record = driver.plan(fault("latency", latency="1ms"), bare)
    assert (record.params["url"], record.params["proxy"]) == (api_url, "backend-1")
    assert (record.undo["url"], record.undo["proxy"]) == (api_url, "backend-1")
    other = Target("proxy", "shown", {}, {"url": "http://127.0.0.2:8474", "proxy": "real"})
    record = driver.plan(fault("partition", mode="refuse"), other)
    assert record.undo == {"url": "http://127.0.0.2:8474", "proxy": "real", "enable": True}


class Searches:
    """An import finder that finds nothing and remembers what it was asked for: every import
    that is not already loaded (one that fails is asked again each time)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        self.names.append(name)


def test_a_request_searches_for_no_module(run: Run[Any], api_url: str, proxied: Proxied) -> None:
    """Once warm, a request imports nothing. httpcore looks for ``sniffio`` at every lock it
    makes and, where it is not installed, searches sys.path each time (encode/httpcore#1103):
    a tenth of a revert's time, paid by each of a hundred proxies reverted at once."""
    client = ToxiproxyClient(api_url)
    searches = Searches()
    try:
        run(client.proxy(proxied.name))
        sys.meta_path.insert(0, searches)
        for _ in range(3):
            run(client.proxy(proxied.name))
    finally:
        sys.meta_path.remove(searches)
        run(client.aclose())
    assert searches.names == []


# --------------------------------------------------------------------------------------------
# An unreachable server


def test_an_unreachable_server_is_a_clear_error(run: Run[Any], api_url: str) -> None:
    url = dead_url()
    driver = ToxiproxyDriver(url)
    record = driver.plan(fault("latency", latency="1ms"), Target("proxy", "db"))
    start = time.monotonic()
    for attempt in (driver.apply(record), driver.revert(record)):
        with pytest.raises(DriverError) as unreachable:
            run(attempt)
        message = str(unreachable.value)
        assert f"no Toxiproxy API reachable at {url}" in message
        assert "`chaoskit proxy`" in message
        assert "TOXIPROXY_URL" in message
    assert time.monotonic() - start < 10  # refused connections fail fast, retries included
    run(driver.aclose())


# --------------------------------------------------------------------------------------------
# The client on its own


def test_the_client_speaks_the_whole_api(run: Run[Any], api_url: str, echo: Echo) -> None:
    async def scenario() -> None:
        name = f"c-{uuid.uuid4().hex[:8]}"
        async with ToxiproxyClient(api_url) as client:
            assert re.fullmatch(r"\d+\.\d+\.\d+", await client.version())
            created = await client.create_proxy(name, echo.address)
            assert (created.name, created.upstream, created.enabled) == (name, echo.address, True)
            assert created.port > 0
            assert (await client.proxies())[name] == created
            assert await client.proxy(name) == created
            assert proxy_target(api_url, name) in await proxy_targets(client)

            with pytest.raises(ToxiproxyError) as exists:
                await client.create_proxy(name, echo.address)
            assert (exists.value.status, exists.value.message) == (409, "proxy already exists")

            toxic = await client.add_toxic(name, "latency", {"latency": 5}, stream="upstream")
            assert (toxic.name, toxic.stream, toxic.attributes) == (
                "latency_upstream",
                "upstream",
                {"latency": 5, "jitter": 0},
            )
            updated = await client.update_toxic(name, toxic.name, {"jitter": 2}, toxicity=0.5)
            assert (updated.attributes, updated.toxicity) == ({"latency": 5, "jitter": 2}, 0.5)
            assert await client.toxics(name) == [updated]

            disabled = await client.update_proxy(name, enabled=False)
            assert not disabled.enabled
            assert disabled.toxics == (updated,)  # toxics survive a disable
            assert disabled.listen == created.listen

            await client.reset()
            after = await client.proxy(name)
            assert (after.enabled, after.toxics) == (True, ())

            again = await client.populate(
                [{"name": name, "listen": created.listen, "upstream": echo.address}]
            )
            assert [p.name for p in again] == [name]

            await client.remove_toxic(name, (await client.add_toxic(name, "noop")).name)
            with pytest.raises(ToxiproxyError) as gone:
                await client.remove_toxic(name, "noop_downstream")
            assert (gone.value.status, gone.value.message, gone.value.gone) == (
                404,
                "toxic not found",
                True,
            )
            await client.delete_proxy(name)
            with pytest.raises(ToxiproxyError, match="proxy not found") as missing:
                await client.proxy(name)
            assert missing.value.url == f"{api_url}/proxies/{name}"
            assert missing.value.method == "GET"
            assert missing.value.gone

    run(scenario())


Step = tuple[int, bytes] | Literal["hold"] | None


class Scripted:
    """A bare HTTP server that answers its script in order: ``None`` reads the request and
    hangs up without answering (the answer is lost), ``"hold"`` never answers, a pair sends
    that status and body."""

    def __init__(self, script: list[Step]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[str] = []
        self._script = list(script)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._script and not self._stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            with sock:
                sock.settimeout(5)
                self.requests.append(self._read(sock))
                step = self._script.pop(0)
                if step == "hold":
                    self._stopped.wait()
                elif step is not None:
                    status, body = step
                    head = (
                        f"HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                    )
                    sock.sendall(head.encode() + body)

    @staticmethod
    def _read(sock: socket.socket) -> str:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        while found and len(body) < int(found.group(1)):
            body += sock.recv(65536)
        return head.split(b"\r\n")[0].decode()

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[Step]], Scripted]]:
    made: list[Scripted] = []

    def make(script: list[Step]) -> Scripted:
        made.append(Scripted(script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_idempotent_requests_are_retried_and_others_are_not(
    run: Run[Any], scripted: Callable[[list[Step]], Scripted]
) -> None:
    async def call(url: str, request: Callable[[ToxiproxyClient], Awaitable[T]]) -> T:
        async with ToxiproxyClient(url) as client:
            return await request(client)

    # A GET whose answer was lost is sent again.
    server = scripted([None, (200, b'{"version": "2.12.0"}')])
    assert run(call(server.url, lambda c: c.version())) == "2.12.0"
    assert server.requests == ["GET /version HTTP/1.1"] * 2

    # A DELETE too; a 404 after a lost answer means the first one did it.
    server = scripted([None, (404, b'{"error":"toxic not found","status":404}\n')])
    run(call(server.url, lambda c: c.remove_toxic("db", "slow")))
    assert server.requests == ["DELETE /proxies/db/toxics/slow HTTP/1.1"] * 2

    # A POST that may have arrived is never sent twice: adding a toxic twice is not harmless.
    server = scripted([None, (200, b"{}")])
    with pytest.raises(DriverError, match=r"POST .*/proxies/db/toxics failed"):
        run(call(server.url, lambda c: c.add_toxic("db", "latency", {"latency": 1})))
    assert server.requests == ["POST /proxies/db/toxics HTTP/1.1"]


def test_error_bodies_and_odd_answers_are_reported(
    run: Run[Any], scripted: Callable[[list[Step]], Scripted]
) -> None:
    server = scripted(
        [
            (400, b'{"error":"bad request body: unexpected EOF","status":400}\n'),
            (405, b""),
            (200, b"<html>not an API</html>"),
        ]
    )

    async def scenario() -> None:
        async with ToxiproxyClient(server.url) as client:
            with pytest.raises(ToxiproxyError) as bad:
                await client.create_proxy("x", "127.0.0.1:1")
            assert (bad.value.status, bad.value.message) == (
                400,
                "bad request body: unexpected EOF",
            )
            assert str(bad.value) == (
                f"Toxiproxy API answered 400 to POST {server.url}/proxies: "
                "bad request body: unexpected EOF"
            )
            with pytest.raises(ToxiproxyError) as empty:
                await client.reset()
            assert (empty.value.status, empty.value.message) == (405, "Scripted")
            with pytest.raises(DriverError, match="is it a Toxiproxy API server"):
                await client.version()

    run(scenario())


def test_a_server_that_does_not_answer_times_out(
    run: Run[Any], scripted: Callable[[list[Step]], Scripted]
) -> None:
    server = scripted(["hold"])

    async def scenario() -> None:
        async with ToxiproxyClient(server.url, timeout=0.5) as client:
            await client.reset()

    start = time.monotonic()
    with pytest.raises(DriverError, match=r"did not answer POST /reset within 0.5s"):
        run(scenario())
    assert time.monotonic() - start < 5
    assert server.requests == ["POST /reset HTTP/1.1"]
