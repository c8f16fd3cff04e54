"""Every toxic with real sockets: what a client and an upstream observe, and when.

Timing bounds are wide enough for a busy 2-core machine, narrow enough that the wrong
semantics (cumulative latency, proxy-wide bandwidth, no flush on removal...) fail them.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import httpx
import pytest

from chaoskit.proxy import run_in_thread

from .conftest import (
    Echo,
    Upstream,
    add_toxic,
    connect,
    create_proxy,
    recv_exactly,
    recv_until_eof,
    round_trip,
)

SLACK = 0.08  # seconds of scheduling noise allowed on top of a toxic's own delay


def test_latency_adds_per_direction_and_adds_up(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    assert round_trip(client) < SLACK
    add_toxic(api, type="latency", attributes={"latency": 100})
    assert 0.1 <= round_trip(client) < 0.1 + SLACK
    add_toxic(api, type="latency", name="second", attributes={"latency": 100})
    add_toxic(api, type="latency", stream="upstream", attributes={"latency": 50})
    assert 0.25 <= round_trip(client) < 0.25 + SLACK


def test_latency_counts_from_read_time_not_cumulatively(
    api: httpx.Client, upstream: Upstream
) -> None:
    client = connect(create_proxy(api, upstream.address))
    add_toxic(api, type="latency", stream="upstream", attributes={"latency": 100})
    client.sendall(b"x")
    server_side = upstream.accept()
    recv_exactly(server_side, 1)
    start = time.perf_counter()
    for _ in range(5):
        client.sendall(b"y")
        time.sleep(0.02)  # the pacing of the writes under test, not a synchronisation
    received = recv_exactly(server_side, 5)
    elapsed = time.perf_counter() - start
    assert received == b"yyyyy"
    assert 0.18 <= elapsed < 0.18 + SLACK  # ~100 ms after the last write, not 5 x 100 ms


def test_jitter_spreads_round_trips(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    add_toxic(api, type="latency", attributes={"latency": 10, "jitter": 100})
    trips = [round_trip(client) for _ in range(25)]
    assert max(trips) < 0.11 + SLACK
    assert max(trips) - min(trips) > 0.03


def test_live_connection_follows_add_update_remove(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    assert round_trip(client) < SLACK
    add_toxic(api, type="latency", attributes={"latency": 100})
    assert 0.1 <= round_trip(client) < 0.1 + SLACK
    api.patch("/proxies/p/toxics/latency_downstream", json={"attributes": {"latency": 300}})
    assert 0.3 <= round_trip(client) < 0.3 + SLACK
    api.delete("/proxies/p/toxics/latency_downstream")
    assert round_trip(client) < SLACK


def test_removal_flushes_held_data_at_once(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    add_toxic(api, type="latency", attributes={"latency": 2000})
    start = time.perf_counter()
    client.sendall(b"held")
    remover = threading.Timer(0.2, api.delete, args=("/proxies/p/toxics/latency_downstream",))
    remover.start()
    assert recv_exactly(client, 4) == b"held"
    assert 0.2 <= time.perf_counter() - start < 0.2 + 3 * SLACK
    remover.join()


def test_bandwidth_is_per_connection(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="bandwidth", attributes={"rate": 100})  # 100 KB/s downstream
    clients = [connect(port) for _ in range(2)]
    for client in clients:
        client.sendall(b"!")
    servers = [upstream.accept() for _ in clients]
    durations: list[float] = []

    def receive(client: socket.socket) -> None:
        start = time.perf_counter()
        recv_exactly(client, 50_000)
        durations.append(time.perf_counter() - start)

    threads = [threading.Thread(target=receive, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for server_side in servers:
        server_side.sendall(b"b" * 50_000)
    for thread in threads:
        thread.join()
    # 50 000 B at 100 KB/s is 0.5 s for each connection at once, not 1 s shared.
    assert all(0.45 <= d < 0.5 + 2 * SLACK for d in durations), durations


def test_slow_close_delays_only_the_eof(api: httpx.Client, upstream: Upstream) -> None:
    client = connect(create_proxy(api, upstream.address))
    add_toxic(api, type="slow_close", attributes={"delay": 400})
    client.sendall(b"?")
    server_side = upstream.accept()
    server_side.sendall(b"data")
    assert recv_exactly(client, 4) == b"data"
    start = time.perf_counter()
    server_side.close()
    assert client.recv(1) == b""
    assert 0.38 <= time.perf_counter() - start < 0.4 + SLACK


def test_timeout_drops_data_and_closes_after_silence(api: httpx.Client, upstream: Upstream) -> None:
    client = connect(create_proxy(api, upstream.address))
    client.sendall(b"1")
    server_side = upstream.accept()
    assert recv_exactly(server_side, 1) == b"1"
    add_toxic(api, type="timeout", stream="upstream", attributes={"timeout": 300})
    for _ in range(3):
        client.sendall(b"z")
        time.sleep(0.1)  # pacing under test: each write restarts the timer
    last_write = time.perf_counter() - 0.1
    assert server_side.recv(10) == b""  # nothing passed; closed after the silence
    assert 0.3 - SLACK / 2 <= time.perf_counter() - last_write < 0.3 + 2 * SLACK
    assert client.recv(1) == b""


def test_timeout_zero_stalls_until_removed_then_closes(
    api: httpx.Client, upstream: Upstream
) -> None:
    client = connect(create_proxy(api, upstream.address))
    add_toxic(api, type="timeout", attributes={"timeout": 0})
    client.sendall(b"?")
    server_side = upstream.accept()
    assert recv_exactly(server_side, 1) == b"?"
    server_side.sendall(b"lost")
    client.settimeout(0.3)
    with pytest.raises(TimeoutError):
        client.recv(10)
    api.delete("/proxies/p/toxics/timeout_downstream")
    client.settimeout(5)
    assert client.recv(10) == b""  # removing a timeout closes the connections it held
    assert server_side.recv(10) == b""


def test_reset_peer_sends_rst_to_connections_started_after_it(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, upstream.address)
    early = connect(port)
    early.sendall(b"?")
    early_server = upstream.accept()
    assert recv_exactly(early_server, 1) == b"?"
    add_toxic(api, type="reset_peer", stream="upstream", attributes={"timeout": 200})
    late = connect(port)
    start = time.perf_counter()
    late.sendall(b"boom")
    with pytest.raises(ConnectionResetError):
        late.recv(10)
    assert 0.2 <= time.perf_counter() - start < 0.2 + SLACK
    early.sendall(b"bye")  # an older connection: dropped chunk, then a plain FIN
    assert early.recv(10) == b""
    assert early_server.recv(10) == b""


def test_reset_peer_at_toxicity_zero_still_turns_closes_into_rst(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="reset_peer", toxicity=0, attributes={"timeout": 0})
    client = connect(port)
    client.sendall(b"ok")
    server_side = upstream.accept()
    assert recv_exactly(server_side, 2) == b"ok"  # the toxic itself never runs...
    server_side.sendall(b"fine")
    assert recv_exactly(client, 4) == b"fine"
    server_side.close()
    with pytest.raises(ConnectionResetError):  # ...but the close is an RST (Toxiproxy #603)
        recv_until_eof(client)


def test_slicer_cuts_chunks_into_delayed_pieces(api: httpx.Client, upstream: Upstream) -> None:
    client = connect(create_proxy(api, upstream.address))
    add_toxic(
        api,
        type="slicer",
        stream="upstream",
        attributes={"average_size": 100, "size_variation": 0, "delay": 20_000},
    )
    payload = (bytes(range(256)) * 4)[:1000]
    start = time.perf_counter()
    client.sendall(payload)
    server_side = upstream.accept()
    pieces: list[bytes] = []
    while sum(map(len, pieces)) < len(payload):
        pieces.append(server_side.recv(4096))
    elapsed = time.perf_counter() - start
    assert b"".join(pieces) == payload
    assert len(pieces) >= 12 and max(map(len, pieces)) <= 126  # 16 pieces of 62-63 B
    assert 0.3 <= elapsed < 0.34 + 2 * SLACK


def test_bandwidth_keeps_a_high_rate(api: httpx.Client, upstream: Upstream) -> None:
    """At 100 MB/s each 32 KiB of the stream is due 0.33 ms after the last. Waits rounded up
    to the event loop's millisecond, and not made up on the next chunk, made this a quarter of
    the rate asked."""
    client = connect(create_proxy(api, upstream.address))
    add_toxic(api, type="bandwidth", stream="upstream", attributes={"rate": 100_000})
    client.sendall(b"x")
    server_side = upstream.accept()
    assert recv_exactly(server_side, 1) == b"x"
    size = 20_000_000
    sender = threading.Thread(target=client.sendall, args=(bytes(size),))
    start = time.perf_counter()
    sender.start()
    received = 0
    while received < size:
        received += len(server_side.recv(1 << 20))
    elapsed = time.perf_counter() - start
    sender.join()
    ideal = size / 100e6
    assert 0.95 * ideal <= elapsed < 1.6 * ideal, elapsed


def test_slicer_keeps_its_rate_with_delays_below_a_millisecond(
    api: httpx.Client, upstream: Upstream
) -> None:
    """1,024 pieces 100 µs apart take about 0.1 s. A sleep per piece on the event loop costs a
    whole millisecond (its timer resolution), which made this about 1.1 s."""
    client = connect(create_proxy(api, upstream.address))
    add_toxic(
        api,
        type="slicer",
        stream="upstream",
        attributes={"average_size": 64, "size_variation": 0, "delay": 100},
    )
    client.sendall(b"x")  # the connection is up before the clock starts
    server_side = upstream.accept()
    assert recv_exactly(server_side, 1) == b"x"
    payload = bytes(range(256)) * 256
    start = time.perf_counter()
    client.sendall(payload)
    assert recv_exactly(server_side, len(payload)) == payload
    elapsed = time.perf_counter() - start
    ideal = len(payload) // 64 * 100e-6  # if every read is cut into 64-byte pieces
    assert 0.9 * ideal / 2 <= elapsed < 3.5 * ideal  # pieces of 32-64 B, wide for a busy host


def test_a_slicer_after_a_bandwidth_toxic_still_slices(
    api: httpx.Client, upstream: Upstream
) -> None:
    """The bandwidth toxic lets 10,000 B through every 100 ms; the slicer after it cuts each
    into 1,000 B pieces 1 ms apart. It once took those pieces, stamped with when the link read
    them, for long overdue and wrote each 10,000 B in one go."""
    client = connect(create_proxy(api, upstream.address))
    add_toxic(api, type="bandwidth", stream="upstream", name="slow", attributes={"rate": 100})
    add_toxic(
        api,
        type="slicer",
        stream="upstream",
        name="cut",
        attributes={"average_size": 1000, "size_variation": 0, "delay": 1000},
    )
    payload = bytes(range(256)) * 120  # 30,720 B: about 0.3 s at 100 KB/s
    client.sendall(payload)
    server_side = upstream.accept()
    reads: list[int] = []
    data = bytearray()
    while len(data) < len(payload):
        chunk = server_side.recv(65536)
        assert chunk, f"EOF after {len(data)} bytes"
        data += chunk
        reads.append(len(chunk))
    assert bytes(data) == payload
    # Pieces the reader was too busy to take one by one meet in its socket; whole blocks of
    # 10,000 B in most reads mean the slicer did not cut.
    assert statistics.median(reads) <= 5000, reads


def test_limit_data_cuts_and_closes(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="limit_data", stream="upstream", attributes={"bytes": 10})
    client = connect(port)
    client.sendall(b"0123456789abcdefghij")
    server_side = upstream.accept()
    assert recv_until_eof(server_side) == b"0123456789"
    assert recv_until_eof(client) == b""


def test_limit_data_zero_closes_on_first_chunk_not_at_connect(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="limit_data", attributes={"bytes": 0})
    client = connect(port)
    client.sendall(b"hello")
    server_side = upstream.accept()
    assert recv_exactly(server_side, 5) == b"hello"  # open: upstream data flows
    server_side.sendall(b"x")
    assert recv_until_eof(client) == b""


def test_toxicity_zero_never_runs(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    add_toxic(api, type="latency", toxicity=0, attributes={"latency": 300})
    assert round_trip(client) < SLACK


def _affected(port: int, connections: int) -> list[bool]:
    pattern = []
    for _ in range(connections):
        client = connect(port)
        pattern.append(round_trip(client) > 0.04)
        client.close()
    return pattern


def test_seed_makes_toxicity_reproducible(echo: Echo) -> None:
    patterns = []
    for _ in range(2):
        with (
            run_in_thread(seed=99) as server,
            httpx.Client(base_url=server.url, trust_env=False) as api,
        ):
            port = create_proxy(api, echo.address)
            add_toxic(api, type="latency", toxicity=0.5, attributes={"latency": 60})
            patterns.append(_affected(port, 12))
    assert patterns[0] == patterns[1]
    assert 1 <= sum(patterns[0]) <= 11  # rolled per connection: some hit, some spared


def test_no_half_close(api: httpx.Client, echo: Echo) -> None:
    client = connect(create_proxy(api, echo.address))
    client.sendall(b"request")
    client.shutdown(socket.SHUT_WR)
    assert recv_until_eof(client) in (b"", b"request")  # the EOF closes both ways at once


def test_unreachable_upstream_closes_the_client(api: httpx.Client) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    dead = f"127.0.0.1:{probe.getsockname()[1]}"
    probe.close()
    client = connect(create_proxy(api, dead))
    assert client.recv(10) == b""
