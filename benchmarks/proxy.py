"""How much the embedded fault proxy costs: the same client and server on loopback, run directly
and through ``chaoskit proxy`` (or any Toxiproxy-compatible server), side by side.

  a  bulk      one TCP stream, no toxics, 1 MiB sendall / recv_into: Gbit/s at the sink,
               median of ``--repeat`` runs of ``--seconds`` (or ``--gib``)
                                          target >= 5 Gbit/s and >= 80 % of the direct path
  b  rtt       64-byte ping-pong with TCP_NODELAY, ``--round-trips`` after a warm-up, in
               ``--repeat`` alternating direct/proxied blocks: p50/p99  target added p50 <= 100 µs
  c  latency   a 100 ms latency toxic downstream, ``--latency-pings`` ping-pongs
                                          target added p50 +100..+103 ms, added p99 <= +110 ms
  d  storm     ``--connections`` concurrent connections through a 50 ms latency toxic, each
               connects, waits until all are open, does ``--pings`` ping-pongs and closes;
               the same client runs directly (no toxic) for comparison. Per-connection
               exchange times include queueing in the one client process (see the direct ones)
                                          target all complete, no errors, proxy peak RSS < 200 MiB
  e  timing    toxics with delays below a few milliseconds, against the ideal: a slicer of
               64-byte pieces ``delay`` µs apart on 65,536 bytes (ideal: 1,024 x delay, first
               byte sent to last byte received), for 10 µs and 100 µs; and ping-pongs through a
               1 ms latency toxic, without and with 1 ms of jitter: what the toxic adds to the
               same proxy's round trip without it (ideal: 1 ms; the proxy's own hop is b's)
                                          target slicer within 10 % of ideal, latency ±0.2 ms
  f  toxic bulk one TCP stream as in a, through a 1 ms latency toxic and through a 100 MB/s
               bandwidth toxic (on the direction the data flows): Gbit/s, median of ``--repeat``
                                          target at least Toxiproxy's (with ``--toxiproxy``)

"added pXX" is the proxied pXX minus the direct p50 (the round trip without the proxy). Clients,
servers and the proxy are separate processes (this file, run with a hidden ``_child`` command),
so on a 2-core machine the proxy competes for CPU as it would in real use. Every section starts
a fresh proxy, so its peak RSS (VmHWM from /proc) belongs to that section alone.

Run:  python benchmarks/proxy.py [--only a,b,c,d] [--seconds S] [--connections N] ...
      python benchmarks/proxy.py --proxy-cmd "toxiproxy-server -port {port}"
      python benchmarks/proxy.py --only e,f --toxiproxy /path/to/toxiproxy-server
      (``{port}`` becomes a free port and readiness is polled on GET /version; without it the
      API URL is read from the command's output, as for ``chaoskit proxy --port 0``; with
``--toxiproxy PATH``, sections e and f also run on that Toxiproxy server, in their own column)

Prints a table and exits 0; the "met" column says which targets were reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import queue
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
CHILD = "_child"
BLOCK = 1 << 20
MESSAGE = b"p" * 64
URL = re.compile(r"http://127\.0\.0\.1:\d+")
PROXY_NAME = "bench"
TOXIC_NAME = "latency_downstream"
SECTIONS = "abcdef"
SLICED = 65_536
SLICE = 64
BANDWIDTH_KBS = 100_000


def raise_file_limit() -> None:
    """Thousands of sockets need more descriptors than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the children: servers and clients, each in its own process ------------------------------


def emit(message: dict[str, Any]) -> None:
    """One JSON line on stdout: how a child reports to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def child_sink() -> None:
    """Accept connections one after the other, read each to EOF, report bytes and time."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    emit({"port": server.getsockname()[1]})
    view = memoryview(bytearray(BLOCK))
    while True:
        conn, _ = server.accept()
        total, first = 0, 0
        with conn:
            while n := conn.recv_into(view):
                if not total:
                    first = time.perf_counter_ns()
                total += n
        emit({"bytes": total, "ns": max(time.perf_counter_ns() - first, 1)})


def child_bulk(port: int, seconds: float, limit: int) -> None:
    """Send 1 MiB blocks for ``seconds`` (or until ``limit`` bytes when > 0), then close."""
    block = bytes(BLOCK)
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline and (limit <= 0 or sent < limit):
            sock.sendall(block)
            sent += BLOCK
        elapsed = time.perf_counter() - start
    emit({"sent": sent, "seconds": elapsed})


class Echo(asyncio.Protocol):
    """Write back whatever arrives, as soon as it arrives."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve_echo() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=4096)
    emit({"port": server.sockets[0].getsockname()[1]})
    await server.serve_forever()


def child_echo() -> None:
    raise_file_limit()
    asyncio.run(serve_echo())


def child_ping(port: int, count: int, warmup: int) -> None:
    """``warmup`` + ``count`` sequential 64-byte round trips on one connection; report the RTTs."""
    rtts: list[int] = []
    view = memoryview(bytearray(len(MESSAGE)))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(30)
        for i in range(warmup + count):
            start = time.perf_counter_ns()
            sock.sendall(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                n = sock.recv_into(view[got:])
                if not n:
                    raise ConnectionError(f"the server closed after {i} round trips")
                got += n
            if i >= warmup:
                rtts.append(time.perf_counter_ns() - start)
    emit({"rtt_ns": rtts})


async def storm(port: int, connections: int, pings: int, timeout: float) -> dict[str, Any]:
    """Open every connection, wait until all are open (or failed), then ping-pong and close."""
    arrived = 0
    everyone = asyncio.Event()

    def arrive() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == connections:
            everyone.set()

    async def one() -> float:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout
            )
        finally:
            arrive()
        try:
            await asyncio.wait_for(everyone.wait(), timeout)
            start = time.perf_counter()
            for _ in range(pings):
                writer.write(MESSAGE)
                await asyncio.wait_for(reader.readexactly(len(MESSAGE)), timeout)
            return time.perf_counter() - start
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    start = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(connections)), return_exceptions=True)
    wall = time.perf_counter() - start
    errors = Counter(
        f"{type(r).__name__}: {r}" if str(r) else type(r).__name__
        for r in results
        if isinstance(r, BaseException)
    )
    times = [r for r in results if isinstance(r, float)]
    return {"completed": len(times), "errors": dict(errors), "wall": wall, "exchange": times}


def child_storm(port: int, connections: int, pings: int, timeout: float) -> None:
    raise_file_limit()
    emit(asyncio.run(storm(port, connections, pings, timeout)))


def run_child(argv: Sequence[str]) -> int:
    role, args = argv[0], argv[1:]
    if role == "sink":
        child_sink()
    elif role == "echo":
        child_echo()
    elif role == "bulk":
        child_bulk(int(args[0]), float(args[1]), int(args[2]))
    elif role == "ping":
        child_ping(int(args[0]), int(args[1]), int(args[2]))
    elif role == "storm":
        child_storm(int(args[0]), int(args[1]), int(args[2]), float(args[3]))
    else:
        raise SystemExit(f"unknown child role {role!r}")
    return 0


# --- the parent: processes, the proxy, the sections -------------------------------------------


class Child:
    """This file run as a child process in ``role``; its JSON lines are read by a thread."""

    def __init__(self, role: str, *args: object) -> None:
        self.role = role
        argv = [sys.executable, str(Path(__file__).resolve()), CHILD, role, *map(str, args)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        """The child's next report; raise if it exits or says nothing for ``timeout`` s."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"the {self.role} child reported nothing in {timeout:.0f} s"
            ) from None
        if line is None:
            raise RuntimeError(f"the {self.role} child exited with {self.proc.wait()}")
        report: dict[str, Any] = json.loads(line)
        return report

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM and wait; SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proxy:
    """A Toxiproxy-compatible server process, driven through its HTTP API."""

    def __init__(self, command: str | None) -> None:
        self.command = command
        self.output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: httpx.Client | None = None
        self.port = 0
        """The benchmark proxy's listening port, once created."""

    def __enter__(self) -> Proxy:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        url: str | None = None
        if self.command is None:
            argv = [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1", "--port", "0"]
        else:
            port = free_port()
            argv = [part.replace("{port}", str(port)) for part in shlex.split(self.command)]
            if "{port}" in self.command:
                url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the proxy exited with {self.proc.returncode}: {self.tail()}")
            if url is None and (found := URL.search(self.text())):
                url = found.group()
            if url is not None and self._answers(url):
                self.api = httpx.Client(base_url=url, timeout=30.0)
                return
            time.sleep(0.05)
        raise TimeoutError(f"the proxy was not ready in {timeout:.0f} s: {self.tail()}")

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(f"{url}/version", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def text(self) -> str:
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.text().strip().splitlines()[-lines:]) or "(no output)"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def call(self, method: str, path: str, want: int, body: Any = None) -> Any:
        assert self.api is not None
        response = self.api.request(method, path, json=body)
        if response.status_code != want:
            raise RuntimeError(
                f"{method} {path} answered {response.status_code}, not {want}: {response.text!r}"
            )
        return response.json() if response.content else None

    def create(self, upstream: int) -> int:
        """A proxy to ``upstream`` on a free loopback port; returns that port."""
        body = {"name": PROXY_NAME, "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{upstream}"}
        listen: str = self.call("POST", "/proxies", 201, body)["listen"]
        return int(listen.rsplit(":", 1)[1])

    def add_latency(self, ms: int, jitter: int = 0) -> None:
        self.add_toxic("latency", "downstream", latency=ms, jitter=jitter)

    def add_toxic(self, kind: str, stream: str, **attributes: int) -> None:
        body = {"type": kind, "stream": stream, "attributes": attributes}
        self.call("POST", f"/proxies/{PROXY_NAME}/toxics", 200, body)

    def remove_latency(self) -> None:
        self.call("DELETE", f"/proxies/{PROXY_NAME}/toxics/{TOXIC_NAME}", 204)

    def memory_mib(self, field: str) -> float:
        """VmRSS, VmHWM (peak RSS) ... of the proxy process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self) -> None:
        was_ready = self.api is not None
        if self.api is not None:
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                self.call("DELETE", f"/proxies/{PROXY_NAME}", 204)
            self.api.close()
            self.api = None
        if self.proc is not None:
            stop_process(self.proc)
            if was_ready and self.proc.returncode not in (0, -signal.SIGTERM):
                print(
                    f"note: the proxy exited with {self.proc.returncode}: {self.tail()}",
                    file=sys.stderr,
                )
        self.output.close()


@dataclass
class Row:
    section: str
    measure: str
    direct: str
    proxied: str
    added: str
    target: str
    met: str
    toxiproxy: str = ""


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of unsorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def ping(port: int, count: int, warmup: int, per_trip: float) -> list[float]:
    """Round-trip times in µs, from a client process."""
    with Child("ping", port, count, warmup) as client:
        rtts: list[int] = client.read(60 + (count + warmup) * per_trip)["rtt_ns"]
    return [rtt / 1000 for rtt in rtts]


def bulk_run(sink: Child, port: int, options: argparse.Namespace) -> float:
    """One bulk stream from a client process to ``port`` (the sink, or a proxy before it):
    Gbit/s at the sink."""
    wait = options.seconds + 120
    with Child("bulk", port, options.seconds, int(options.gib * (1 << 30))) as client:
        received = sink.read(wait)
        client.read(wait)
    gbits: float = received["bytes"] * 8 / received["ns"]  # bits/ns = Gbit/s
    return gbits


def section_bulk(options: argparse.Namespace) -> list[Row]:
    runs: dict[str, list[float]] = {"direct": [], "proxied": []}
    with Child("sink") as sink, Proxy(options.proxy_cmd) as proxy:
        sink_port = sink.read(30)["port"]
        ports = {"direct": sink_port, "proxied": proxy.create(sink_port)}
        for _ in range(options.repeat):
            for path, port in ports.items():
                runs[path].append(bulk_run(sink, port, options))
    direct, proxied = median(runs["direct"]), median(runs["proxied"])
    spread = "  ".join(f"{path} {min(v):.2f}-{max(v):.2f}" for path, v in runs.items())
    print(f"  a: Gbit/s per run (min-max): {spread}")
    return [
        Row(
            "a",
            f"bulk stream, Gbit/s (median of {options.repeat})",
            f"{direct:.2f}",
            f"{proxied:.2f}",
            f"{proxied / direct:.0%} of direct",
            ">= 5 Gbit/s, >= 80 % of direct",
            verdict(proxied >= 5 and proxied >= 0.8 * direct),
        )
    ]


def section_rtt(options: argparse.Namespace) -> list[Row]:
    # Direct and proxied blocks alternate, so that load from elsewhere hits both alike.
    blocks = max(1, options.repeat)
    count = options.round_trips // blocks * blocks
    warmup = max(100, count // blocks // 20)
    direct: list[float] = []
    proxied: list[float] = []
    with Child("echo") as echo, Proxy(options.proxy_cmd) as proxy:
        echo_port = echo.read(30)["port"]
        listen = proxy.create(echo_port)
        for _ in range(blocks):
            direct += ping(echo_port, count // blocks, warmup, 0.001)
            proxied += ping(listen, count // blocks, warmup, 0.001)
    base = median(direct)
    rows = []
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        d, p = quantile(direct, q), quantile(proxied, q)
        added = p - base
        target, met = ("<= +100 µs", verdict(added <= 100)) if name == "p50" else ("-", "-")
        rows.append(
            Row(
                "b",
                f"64 B round trip {name}, µs (n={count})",
                f"{d:.1f}",
                f"{p:.1f}",
                f"{added:+.1f}",
                target,
                met,
            )
        )
    return rows


def section_latency(options: argparse.Namespace) -> list[Row]:
    count = options.latency_pings
    with Child("echo") as echo, Proxy(options.proxy_cmd) as proxy:
        echo_port = echo.read(30)["port"]
        listen = proxy.create(echo_port)
        direct = ping(echo_port, max(count, 2000), 200, 0.001)
        proxy.add_latency(100)
        proxied = ping(listen, count, 3, 0.2)
        proxy.remove_latency()
    base = median(direct)
    rows = []
    for name, q, target, low, high in (
        ("p50", 0.5, "+100..+103 ms", 100, 103),
        ("p99", 0.99, "<= +110 ms", -math.inf, 110),
    ):
        d, p = quantile(direct, q) / 1000, quantile(proxied, q) / 1000
        added = p - base / 1000
        rows.append(
            Row(
                "c",
                f"round trip {name}, 100 ms toxic, ms (n={count})",
                f"{d:.3f}",
                f"{p:.3f}",
                f"{added:+.3f}",
                target,
                verdict(low <= added <= high),
            )
        )
    return rows


def section_storm(options: argparse.Namespace) -> list[Row]:
    n, pings, timeout = options.connections, options.pings, options.timeout
    with Child("echo") as echo, Proxy(options.proxy_cmd) as proxy:
        echo_port = echo.read(30)["port"]
        listen = proxy.create(echo_port)
        idle = proxy.memory_mib("VmRSS")
        with Child("storm", echo_port, n, pings, timeout) as client:
            direct = client.read(timeout * (pings + 2) + 60)
        proxy.add_latency(50)
        with Child("storm", listen, n, pings, timeout) as client:
            proxied = client.read(timeout * (pings + 2) + 60)
        peak = proxy.memory_mib("VmHWM")
    for path, report in (("direct", direct), ("proxied", proxied)):
        for error, times in report["errors"].items():
            print(f"  d: {path}: {times} x {error}")

    def tally(report: dict[str, Any]) -> str:
        return f"{report['completed']}/{sum(report['errors'].values())}"

    def exchange(report: dict[str, Any], q: float) -> str:
        times = report["exchange"]
        return f"{quantile(times, q) * 1000:.1f}" if times else "-"

    all_done = proxied["completed"] == n and not proxied["errors"]
    return [
        Row(
            "d",
            f"{n} conns x {pings} pings, completed/errors",
            tally(direct),
            tally(proxied),
            "",
            f"{n}/0",
            verdict(all_done),
        ),
        Row("d", "wall time, s (direct: no toxic)", f"{direct['wall']:.2f}",
            f"{proxied['wall']:.2f}", "", "-", "-"),
        Row("d", f"per-conn {pings} ping-pongs p50 / p99, ms",
            f"{exchange(direct, 0.5)} / {exchange(direct, 0.99)}",
            f"{exchange(proxied, 0.5)} / {exchange(proxied, 0.99)}", "", "-", "-"),
        Row("d", "proxy RSS idle / peak (VmHWM), MiB", "", f"{idle:.1f} / {peak:.1f}", "",
            "peak < 200 MiB", verdict(peak < 200)),
    ]  # fmt: skip


def sliced_seconds(proxy: Proxy, listener: socket.socket, delay_us: int) -> float:
    """Seconds from sending SLICED bytes to receiving the last, through a slicer toxic of
    SLICE-byte pieces ``delay_us`` apart (upstream, the direction the bytes go)."""
    proxy.add_toxic("slicer", "upstream", average_size=SLICE, size_variation=0, delay=delay_us)
    with socket.create_connection(("127.0.0.1", proxy.port)) as client:
        server, _ = listener.accept()
        with server:
            server.settimeout(60)
            view = memoryview(bytearray(SLICED))
            start = time.perf_counter()
            client.sendall(bytes(SLICED))
            got = 0
            while got < SLICED:
                n = server.recv_into(view[got:])
                if not n:
                    raise ConnectionError(f"the proxy closed after {got} bytes")
                got += n
            elapsed = time.perf_counter() - start
    proxy.call("DELETE", f"/proxies/{PROXY_NAME}/toxics/slicer_upstream", 204)
    return elapsed


def timing(command: str | None, options: argparse.Namespace) -> dict[str, Any]:
    """Section e's measures on one server: slicer seconds by delay, latency added in ms."""
    found: dict[str, Any] = {}
    with Proxy(command) as proxy:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            proxy.port = proxy.create(listener.getsockname()[1])
            for delay in (10, 100):
                found[f"slicer {delay}"] = median(
                    [sliced_seconds(proxy, listener, delay) for _ in range(options.repeat)]
                )
            proxy.call("DELETE", f"/proxies/{PROXY_NAME}", 204)
        with Child("echo") as echo:
            echo_port = echo.read(30)["port"]
            proxy.port = proxy.create(echo_port)
            # What the toxic adds: over the same proxy without it (its own hop is section b's).
            plain = median(ping(proxy.port, 2000, 200, 0.001)) / 1000
            found["hop"] = plain - median(ping(echo_port, 2000, 200, 0.001)) / 1000
            for jitter in (0, 1):
                proxy.add_latency(1, jitter)
                trips = ping(proxy.port, options.latency_pings * 5, 20, 0.003)
                proxy.remove_latency()
                found[f"latency {jitter}"] = [trip / 1000 - plain for trip in trips]
    return found


def section_timing(options: argparse.Namespace) -> list[Row]:
    ours = timing(options.proxy_cmd, options)
    theirs = timing(toxiproxy_command(options), options) if options.toxiproxy else None
    rows = []
    for delay in (10, 100):
        ideal = SLICED // SLICE * delay / 1e6
        got = ours[f"slicer {delay}"]
        other = f"{theirs[f'slicer {delay}'] * 1000:.2f}" if theirs else ""
        rows.append(
            Row(
                "e",
                f"slicer {SLICE} B / {delay} µs on {SLICED:,} B, ms (median of {options.repeat})",
                f"{ideal * 1000:.2f}",
                f"{got * 1000:.2f}",
                f"{got / ideal - 1:+.1%} of ideal",
                "within 10 % of ideal",
                verdict(abs(got / ideal - 1) <= 0.10),
                other,
            )
        )
    print(f"  e: the proxy's own hop without a toxic, p50 over direct: {ours['hop'] * 1000:.0f} µs")
    for jitter in (0, 1):
        added = ours[f"latency {jitter}"]
        label = "1 ms latency" + (" ± 1 ms jitter" if jitter else "")
        measure = statistics.fmean if jitter else median
        name = "mean" if jitter else "p50"
        other = f"{measure(theirs[f'latency {jitter}']):.3f}" if theirs else ""
        rows.append(
            Row(
                "e",
                f"{label}: added by the toxic, {name}, ms (n={len(added)})",
                "1.000",
                f"{measure(added):.3f}",
                f"p1 {quantile(added, 0.01):.3f} / p99 {quantile(added, 0.99):.3f}",
                "1 ms ± 0.2 ms",
                verdict(abs(measure(added) - 1) <= 0.2),
                other,
            )
        )
    return rows


def toxic_bulk(command: str | None, options: argparse.Namespace) -> dict[str, float]:
    """Section f's Gbit/s (median) on one server, by toxic."""
    found: dict[str, float] = {}
    toxics = {"latency": {"latency": 1}, "bandwidth": {"rate": BANDWIDTH_KBS}}
    with Child("sink") as sink, Proxy(command) as proxy:
        port = proxy.create(sink.read(30)["port"])
        for kind, attributes in toxics.items():
            proxy.add_toxic(kind, "upstream", **attributes)
            runs = [bulk_run(sink, port, options) for _ in range(options.repeat)]
            proxy.call("DELETE", f"/proxies/{PROXY_NAME}/toxics/{kind}_upstream", 204)
            found[kind] = median(runs)
    return found


def section_toxic_bulk(options: argparse.Namespace) -> list[Row]:
    ours = toxic_bulk(options.proxy_cmd, options)
    theirs = toxic_bulk(toxiproxy_command(options), options) if options.toxiproxy else None
    rate = BANDWIDTH_KBS * 1000 * 8 / 1e9
    rows = []
    for kind, label, ideal in (
        ("latency", "1 ms latency", "-"),
        ("bandwidth", f"{BANDWIDTH_KBS // 1000} MB/s bandwidth", f"{rate:.2f}"),
    ):
        got = ours[kind]
        other = theirs[kind] if theirs else None
        rows.append(
            Row(
                "f",
                f"bulk stream, {label}, Gbit/s (median of {options.repeat})",
                ideal,
                f"{got:.3f}",
                f"{got / other:.2f}x Toxiproxy" if other else "",
                ">= Toxiproxy's",
                verdict(got >= other) if other else "-",
                f"{other:.3f}" if other else "",
            )
        )
    return rows


def toxiproxy_command(options: argparse.Namespace) -> str:
    return f"{shlex.quote(options.toxiproxy)} -host 127.0.0.1 -port {{port}}"


def print_table(rows: Sequence[Row]) -> None:
    header = Row("", "measure", "direct/ideal", "proxied", "added", "target", "met", "toxiproxy")
    cells = [list(vars(row).values()) for row in (header, *rows)]
    if not any(row.toxiproxy for row in rows):
        cells = [line[:-1] for line in cells]
    widths = [max(len(str(line[i])) for line in cells) for i in range(len(cells[0]))]
    right = {2, 3, 4, 7}
    for line in cells:
        print(
            "  ".join(
                f"{cell:>{w}}" if i in right else f"{cell:<{w}}"
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=SECTIONS, help="sections to run, e.g. a,b (abcdef)")
    parser.add_argument("--proxy-cmd", help="another Toxiproxy-compatible server; {port} = API")
    parser.add_argument("--toxiproxy", metavar="PATH", help="a toxiproxy-server to compare (e, f)")
    parser.add_argument("--seconds", type=float, default=3.0, help="bulk run length (3)")
    parser.add_argument("--gib", type=float, default=0.0, help="or stop a bulk run after N GiB")
    parser.add_argument("--repeat", type=int, default=3, help="bulk runs / rtt blocks per path (3)")
    parser.add_argument("--round-trips", type=int, default=20_000, help="section b (20000)")
    parser.add_argument("--latency-pings", type=int, default=200, help="section c (200)")
    parser.add_argument("--connections", type=int, default=1000, help="section d (1000)")
    parser.add_argument("--pings", type=int, default=3, help="per connection in section d (3)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per socket step, s (60)")
    options = parser.parse_args(argv)
    options.only = [s for s in SECTIONS if s in options.only.replace(",", "").lower()]
    return options


def main(argv: Sequence[str]) -> int:
    if argv[:1] == [CHILD]:
        return run_child(argv[1:])
    options = parse(argv)
    raise_file_limit()
    sections: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
        "a": section_bulk,
        "b": section_rtt,
        "c": section_latency,
        "d": section_storm,
        "e": section_timing,
        "f": section_toxic_bulk,
    }
    proxy = options.proxy_cmd or "python -m chaoskit proxy"
    print(f"proxy: {proxy} | Python {platform.python_version()} | {os.cpu_count()} CPUs | loopback")
    rows: list[Row] = []
    for name in options.only:
        started = time.perf_counter()
        try:
            rows += sections[name](options)
        except Exception as error:  # a broken proxy is a finding: report it, run the rest
            rows.append(Row(name, f"FAILED: {type(error).__name__}: {error}", "", "", "", "", "NO"))
        print(f"  {name}: {time.perf_counter() - started:.1f} s", flush=True)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
