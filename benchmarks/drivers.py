"""How fast the fault drivers act: for each fault, the time from ``apply`` returning until a
probe outside the target sees the effect, and from ``revert`` returning until it sees it gone.

Every row runs the real driver (plan, apply, revert) against a real target, ``--tries`` times
(default 20), and prints the median and max of both times against the row's target:

  process-pause   SIGSTOP/SIGCONT on a child writing a line every 1 ms     target 10 ms
  process-crash   SIGKILL on a child; it has exited (pidfd readable)       target 10 ms
  process-disk    balloon in a sandboxed process's tmpfs: 4 KiB write ENOSPC     1 s
  clock-skew      libfaketime skew file: the child's time.time() is off by 1 h   1.5 s
  docker-pause    docker pause/unpause: HTTP to the published port hangs         1 s
  docker-disk     balloon in the container's tmpfs: 4 KiB write ENOSPC           1 s
  docker-kill     SIGKILL to the container; revert starts it again               1 s
  proxy-latency   50 ms latency toxic: echo round trips come back late     target 10 ms
  proxy-hang      partition (timeout toxics): echo on an open connection stalls  10 ms

How an observation is dated (all times from ``time.perf_counter``): a fault is seen when the
probe that showed it sampled the target (the last tick before the silence, the send time of a
request that then went unanswered or came back late); health is seen when the answer that shows
it arrived (the first fresh tick, the reply, the write that succeeded). A probe that saw the
effect before the call returned counts 0. Probe windows (silences, reply timeouts) are only
there to decide, they are not counted. "met" is yes when the max is within the target, "median"
when only the median is.

Run:  python benchmarks/drivers.py [--tries N] [--only ROW[,ROW...]] [--image TAG] [TRIES]
      (``--only`` takes row names, prefixes such as ``docker``, or globs; ``--list`` lists rows;
      ``--raw-api`` adds the proxy rows' toxics through the Toxiproxy HTTP API, not the driver)

Needs root (the sandbox's mount namespace), libfaketime, and a Docker engine with the stack
image (built here by ``chaoskit.stack.image.ensure_image``, never pulled); a row whose needs are
missing is skipped with the reason. Containers carry the label ``chaoskit.bench=<suffix>`` and
are removed on every exit. Exit code 1 when a row's median misses its target or a try never
saw the effect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fnmatch
import os
import re
import secrets
import select
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter

from chaoskit.drivers.base import AppliedFault, DriverError, Target
from chaoskit.drivers.clock import ClockDriver
from chaoskit.drivers.process import ProcessDriver, process_target
from chaoskit.launch import sandbox
from chaoskit.launch.faketime import find_libfaketime, process_faketime
from chaoskit.model import Fault
from chaoskit.stack.launcher import free_ports
from chaoskit.units import Size

T = TypeVar("T")
now = time.perf_counter

# A child that writes its own perf_counter (CLOCK_MONOTONIC, the same clock as ours) every 1 ms.
TICKER = (
    "import os, time\n"
    "while True:\n"
    "    os.write(1, b'%.9f\\n' % time.perf_counter())\n"
    "    time.sleep(0.001)\n"
)
# A child that answers every line on stdin with its wall clock (under libfaketime: skewed).
# Blocking reads only: Python's time.sleep raises EINVAL under libfaketime 0.9.10 here.
CLOCK_ECHO = (
    "import sys, time\n"
    "for line in sys.stdin:\n"
    "    sys.stdout.write(repr(time.time()) + '\\n')\n"
    "    sys.stdout.flush()\n"
)
SILENCE_S = 0.020  # no tick for this long: the ticker is paused
REPLY_TIMEOUT_S = 0.250  # an HTTP request to a container unanswered this long: it hangs
STALL_S = 0.020  # an echo through the proxy unanswered this long: the connection stalls
LATENCY_MS = 50  # the latency toxic; a round trip >= 80% of it shows it
SKEW_S = 3600.0
SKEW_TOLERANCE_S = 0.25
PROBE_BYTES = b"\0" * 4096
GIVE_UP_S = 10.0  # a probe that sees nothing for this long: the try failed
DOCKER_GIVE_UP_S = 30.0


class Skip(Exception):
    """A row cannot run here; the message says why."""


class Driver(Protocol):
    """What the benchmark needs of a fault driver (chaoskit.drivers.base.FaultDriver)."""

    def plan(self, fault: Fault, target: Target) -> AppliedFault: ...
    async def apply(self, record: AppliedFault) -> None: ...
    async def revert(self, record: AppliedFault) -> None: ...


def fault(kind: str, **fields: object) -> Fault:
    """One fault, validated by the experiment model as an experiment file's would be."""
    return TypeAdapter(Fault).validate_python({"type": kind, "target": "bench", **fields})


@dataclass
class Tries:
    """What one row measured, in seconds; None for a try whose effect was never seen."""

    inject: list[float | None] = field(default_factory=list)
    revert: list[float | None] = field(default_factory=list)
    apply_call: list[float] = field(default_factory=list)
    revert_call: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)


class Lab:
    """Shared targets (a container, a proxy server), made on first use and all torn down by
    :meth:`close`; one event loop for every driver call."""

    def __init__(self, suffix: str, image: str | None, raw_api: bool) -> None:
        self.suffix = suffix
        self.image = image
        self.raw_api = raw_api
        self.loop = asyncio.Runner()
        self.stack = contextlib.ExitStack()
        self.stack.callback(self.loop.close)
        self._docker: DockerLab | Skip | None = None
        self._proxy: ProxyLab | Skip | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix=f"chaoskit-bench-{suffix}-"))
        self.stack.callback(_remove_tree, self.scratch)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one driver call on the lab's event loop."""
        return self.loop.run(coroutine)

    def timed(self, coroutine: Coroutine[Any, Any, None], calls: list[float]) -> float:
        """Run a driver call; record how long it took; return when it returned."""
        start = now()
        self.run(coroutine)
        end = now()
        calls.append(end - start)
        return end

    def docker(self) -> DockerLab:
        if self._docker is None:
            try:
                self._docker = self.stack.enter_context(DockerLab.open(self))
            except Skip as exc:
                self._docker = exc
        if isinstance(self._docker, Skip):
            raise self._docker
        return self._docker

    def proxy(self) -> ProxyLab:
        if self._proxy is None:
            try:
                self._proxy = self.stack.enter_context(ProxyLab.open(self))
            except Skip as exc:
                self._proxy = exc
        if isinstance(self._proxy, Skip):
            raise self._proxy
        return self._proxy

    def close(self) -> None:
        self.stack.close()


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            with contextlib.suppress(OSError):
                child.rmdir()
        else:
            child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()


def since(seen: float, returned: float) -> float:
    """How long after the call returned the effect was seen (0 if it was seen before)."""
    return max(seen - returned, 0.0)


# --------------------------------------------------------------------------------------------
# Local processes


class Ticks:
    """The 1 ms ticks of a TICKER child, read from its pipe without blocking."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.partial = b""

    def read(self, timeout: float) -> list[float]:
        """The ticks that arrive within ``timeout`` (all that are waiting, once one is)."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not data:
            raise RuntimeError("the ticker exited")
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [float(line) for line in lines if line]

    def latest(self) -> float:
        """Drain the pipe; the newest tick (waits for one if none is waiting)."""
        ticks = self.read(1.0)
        if not ticks:
            raise RuntimeError("the ticker is not ticking")
        while more := self.read(0):
            ticks = more
        return ticks[-1]


@contextlib.contextmanager
def child(argv: list[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, killed and reaped on exit."""
    process = subprocess.Popen(argv, **popen)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def process_pause(lab: Lab, tries: int) -> Tries:
    out = Tries()
    driver = ProcessDriver()
    with child([sys.executable, "-c", TICKER], stdout=subprocess.PIPE) as ticker:
        ticks = Ticks(ticker)
        target = process_target(ticker.pid, "ticker")
        for _ in range(tries):
            last = ticks.latest()
            record = driver.plan(fault("pause"), target)
            returned = lab.timed(driver.apply(record), out.apply_call)
            deadline = returned + GIVE_UP_S
            stopped = None
            while now() < deadline:
                got = ticks.read(SILENCE_S)
                if not got:
                    stopped = last
                    break
                last = got[-1]
            out.inject.append(None if stopped is None else since(stopped, returned))
            asked = now()
            returned = lab.timed(driver.revert(record), out.revert_call)
            resumed = None
            while resumed is None and now() < returned + GIVE_UP_S:
                # A tick stamped before the revert was asked for was taken before the stop.
                fresh = [t for t in ticks.read(GIVE_UP_S) if t > asked]
                resumed = fresh[0] if fresh else None
            out.revert.append(None if resumed is None else since(resumed, returned))
    out.notes.append(
        f"ticks carry the child's own clock; paused = no tick for {SILENCE_S * 1e3:g} ms, "
        "dated at the last tick; resumed = first tick stamped after the revert was asked"
    )
    return out


def process_crash(lab: Lab, tries: int) -> Tries:
    out = Tries()
    driver = ProcessDriver()
    for _ in range(tries):
        with child([sys.executable, "-c", TICKER], stdout=subprocess.PIPE) as ticker:
            Ticks(ticker).latest()  # running its loop
            pidfd = os.pidfd_open(ticker.pid)
            try:
                record = driver.plan(fault("crash", signal="SIGKILL"), process_target(ticker.pid))
                returned = lab.timed(driver.apply(record), out.apply_call)
                ready, _, _ = select.select([pidfd], [], [], GIVE_UP_S)
                seen = now()
            finally:
                os.close(pidfd)
            out.inject.append(since(seen, returned) if ready else None)
            ticker.wait(GIVE_UP_S)
            lab.timed(driver.revert(record), out.revert_call)  # nothing to take back
    out.notes.append("exited = the child's pidfd polls readable (fresh child per try)")
    return out


def write_fails(path: Path) -> bool:
    """Does a 4 KiB write into ``path``'s folder fail with ENOSPC? (the file is removed)"""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, PROBE_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return True
    finally:
        path.unlink(missing_ok=True)
    return False


def disk_tries(lab: Lab, tries: int, driver: Driver, target: Target, probe: Path) -> Tries:
    """Fill the target's tmpfs to the brim and empty it, ``tries`` times, writing ``probe``."""
    out = Tries()
    for _ in range(tries):
        if write_fails(probe):
            raise RuntimeError(f"{probe.parent} is full before the fault")
        record = driver.plan(fault("disk_full", leave="0B"), target)
        returned = lab.timed(driver.apply(record), out.apply_call)
        out.inject.append(poll(lambda: write_fails(probe), returned))
        returned = lab.timed(driver.revert(record), out.revert_call)
        out.revert.append(poll(lambda: not write_fails(probe), returned))
    out.notes.append(
        f"a {len(PROBE_BYTES) // 1024} KiB write through /proc/PID/root, dated when it returns"
    )
    return out


def poll(seen: Callable[[], bool], returned: float, give_up: float = GIVE_UP_S) -> float | None:
    """Ask ``seen`` in a tight loop; how long after ``returned`` it first said yes."""
    while True:
        yes = seen()
        at = now()
        if yes:
            return since(at, returned)
        if at > returned + give_up:
            return None


def process_disk(lab: Lab, tries: int) -> Tries:
    if os.geteuid() != 0:
        raise Skip("the sandbox's mount namespace needs root")
    data = lab.scratch / "data"
    argv = sandbox.command(["sleep", "infinity"], str(data), Size.parse("1MiB"))
    with child(argv) as sandboxed:
        deadline = now() + GIVE_UP_S
        while not _mounted(sandboxed.pid, str(data)):
            if sandboxed.poll() is not None or now() > deadline:
                raise RuntimeError("the sandbox did not mount its tmpfs")
            time.sleep(0.005)
        target = process_target(sandboxed.pid, "sandboxed", tmpfs=str(data))
        probe = Path(f"/proc/{sandboxed.pid}/root") / str(data).lstrip("/") / ".bench-probe"
        out = disk_tries(lab, tries, ProcessDriver(), target, probe)
    out.notes.append("1 MiB tmpfs in the mount namespace of `sleep infinity` (chaoskit sandbox)")
    return out


def _mounted(pid: int, path: str) -> bool:
    from chaoskit.drivers.balloon import is_tmpfs  # noqa: PLC0415 - only this row needs it

    return is_tmpfs(pid, path)


def clock_skew(lab: Lab, tries: int) -> Tries:
    try:
        find_libfaketime()
    except DriverError as exc:
        raise Skip(str(exc)) from None
    skew_file = lab.scratch / "skew" / "clock"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **process_faketime(skew_file)}
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    out = Tries()
    driver = ClockDriver()
    with child([sys.executable, "-c", CLOCK_ECHO], env=env, **pipes) as echo:
        assert echo.stdin is not None
        assert echo.stdout is not None
        stdin, stdout = echo.stdin, echo.stdout

        def offset() -> float:
            """The child's wall clock minus ours, halfway through the round trip."""
            before = time.time()
            stdin.write(b"\n")
            stdin.flush()
            theirs = float(stdout.readline())
            return theirs - (before + time.time()) / 2

        target = process_target(echo.pid, "clock", faketime=str(skew_file))
        for _ in range(tries):
            if abs(offset()) > SKEW_TOLERANCE_S:
                raise RuntimeError("the child's clock is off before the skew")
            record = driver.plan(fault("clock_skew", skew="+1h"), target)
            returned = lab.timed(driver.apply(record), out.apply_call)
            out.inject.append(poll(lambda: abs(offset() - SKEW_S) < SKEW_TOLERANCE_S, returned))
            returned = lab.timed(driver.revert(record), out.revert_call)
            out.revert.append(poll(lambda: abs(offset()) < SKEW_TOLERANCE_S, returned))
    out.notes.append(
        "a child under libfaketime answers each stdin line with time.time(); "
        f"skewed = within {SKEW_TOLERANCE_S:g} s of +1 h, dated when the answer arrives"
    )
    return out


# --------------------------------------------------------------------------------------------
# Docker


def http_ok(port: int, timeout: float) -> bool:
    """Does the backend on ``port`` answer GET /health/live with 200 within ``timeout``?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET /health/live HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            head = b""
            while len(head) < 12:
                chunk = sock.recv(64)
                if not chunk:
                    break
                head += chunk
            return head.startswith(b"HTTP/1.") and head[9:12] == b"200"
    except OSError:
        return False


def first_failure(port: int, returned: float, give_up: float) -> float | None:
    """Send requests back to back; when the first one that went unanswered was sent."""
    while now() < returned + give_up:
        sent = now()
        if not http_ok(port, REPLY_TIMEOUT_S):
            return since(sent, returned)
    return None


def first_answer(port: int, returned: float, give_up: float) -> float | None:
    """Send requests back to back; when the first answer arrived."""
    return poll(lambda: http_ok(port, REPLY_TIMEOUT_S), returned, give_up)


@dataclass
class DockerLab:
    """One stack backend container with a published port and a 1 MiB tmpfs at /data."""

    client: Any
    container: Any
    port: int
    driver: Any

    @classmethod
    @contextlib.contextmanager
    def open(cls, lab: Lab) -> Iterator[DockerLab]:
        try:
            import docker  # noqa: PLC0415 - only the docker rows need the SDK
            import docker.errors  # noqa: PLC0415

            from chaoskit.drivers.docker import DockerDriver  # noqa: PLC0415
        except ImportError as exc:
            raise Skip(f"the Docker SDK is not installed: {exc}") from None
        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as exc:
            raise Skip(f"no Docker engine reachable: {exc}") from None
        try:
            image = lab.image or _stack_image(client)
            [port] = free_ports(1)
            name = f"chaoskit-bench-{lab.suffix}"
            container = client.containers.run(
                image,
                ["chaoskit.stack.backend", "--name", "bench", "--host", "0.0.0.0",
                 "--port", "8080", "--data-dir", "/data"],
                name=name,
                labels={"chaoskit.bench": lab.suffix},
                ports={"8080/tcp": ("127.0.0.1", port)},
                tmpfs={"/data": "size=1m"},
                detach=True,
            )  # fmt: skip
            try:
                if first_answer(port, now(), DOCKER_GIVE_UP_S) is None:
                    raise RuntimeError(f"container {name} did not answer on port {port}")
                with DockerDriver(client) as driver:
                    yield cls(client, container, port, driver)
            finally:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
                for left in client.containers.list(
                    all=True, filters={"label": f"chaoskit.bench={lab.suffix}"}
                ):
                    left.remove(force=True)
        finally:
            client.close()

    def target(self) -> Target:
        return Target("container", self.container.name, {}, {"id": self.container.id})

    def pid(self) -> int:
        self.container.reload()
        return int(self.container.attrs["State"]["Pid"])

    def status(self) -> str:
        self.container.reload()
        return str(self.container.status)


def _stack_image(client: Any) -> str:
    from chaoskit.stack.image import ImageError, ensure_image  # noqa: PLC0415

    def log(line: str) -> None:
        if line.startswith(("$", "docker build", "removed")):  # not the build's own output
            print(f"  {line}", file=sys.stderr)

    print("ensuring the stack image (built locally when the sources changed)", file=sys.stderr)
    try:
        return ensure_image(client, log)
    except ImageError as exc:
        raise Skip(f"the stack image cannot be built here: {exc}") from None


def docker_pause(lab: Lab, tries: int) -> Tries:
    box = lab.docker()
    out = Tries()
    for _ in range(tries):
        if first_answer(box.port, now(), DOCKER_GIVE_UP_S) is None:
            raise RuntimeError("the container does not answer before the pause")
        record = box.driver.plan(fault("pause"), box.target())
        returned = lab.timed(box.driver.apply(record), out.apply_call)
        out.inject.append(first_failure(box.port, returned, DOCKER_GIVE_UP_S))
        returned = lab.timed(box.driver.revert(record), out.revert_call)
        out.revert.append(first_answer(box.port, returned, DOCKER_GIVE_UP_S))
    out.notes.append(
        f"GET /health/live on the published port; hangs = no answer within "
        f"{REPLY_TIMEOUT_S * 1e3:g} ms, dated when that request was sent"
    )
    return out


def docker_disk(lab: Lab, tries: int) -> Tries:
    if os.geteuid() != 0:
        raise Skip("writing into a container's tmpfs through /proc needs root")
    box = lab.docker()
    probe = Path(f"/proc/{box.pid()}/root/data/.bench-probe")
    out = disk_tries(lab, tries, box.driver, box.target(), probe)
    out.notes.append("1 MiB container tmpfs at /data (--tmpfs /data:size=1m)")
    return out


def docker_kill(lab: Lab, tries: int) -> Tries:
    box = lab.docker()
    out = Tries()
    exited: list[float] = []
    answers: list[float] = []
    for _ in range(tries):
        if first_answer(box.port, now(), DOCKER_GIVE_UP_S) is None:
            raise RuntimeError("the container does not answer before the kill")
        record = box.driver.plan(fault("crash", signal="SIGKILL"), box.target())
        returned = lab.timed(box.driver.apply(record), out.apply_call)
        out.inject.append(first_failure(box.port, returned, DOCKER_GIVE_UP_S))
        # The revert starts only a container the engine already shows as exited.
        if (seen := poll(lambda: box.status() != "running", returned, DOCKER_GIVE_UP_S)) is None:
            raise RuntimeError("the engine never showed the killed container as exited")
        exited.append(seen)
        returned = lab.timed(box.driver.revert(record), out.revert_call)
        out.revert.append(poll(lambda: box.status() == "running", returned, DOCKER_GIVE_UP_S))
        if (back := first_answer(box.port, returned, DOCKER_GIVE_UP_S)) is not None:
            answers.append(back)
    out.extra["the engine showed it exited"] = exited
    out.extra["the backend answered HTTP again (its own start-up included)"] = answers
    out.notes.append(
        "killed = a request to the published port fails, dated when sent; revert = "
        "the engine shows the container running (no restart policy); the revert is called "
        "only once the engine shows the exit"
    )
    return out


# --------------------------------------------------------------------------------------------
# Proxy toxics


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError):
            while data := sock.recv(1 << 16):
                sock.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class RawToxiproxy:
    """Network faults through the Toxiproxy HTTP API directly, for a tree without
    ``chaoskit.drivers.toxiproxy``: the toxics the driver would add, and their removal."""

    def __init__(self, url: str) -> None:
        import httpx  # noqa: PLC0415

        self.http = httpx.AsyncClient(base_url=url, trust_env=False, timeout=10)

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        proxy = str(target.ref["proxy"])
        tag = secrets.token_hex(4)
        if fault.type == "latency":
            specs = [("downstream", "latency", {"latency": LATENCY_MS, "jitter": 0})]
        elif fault.type == "partition":
            specs = [(s, "timeout", {"timeout": 0}) for s in ("upstream", "downstream")]
        else:
            raise DriverError(f"the raw API path has no {fault.type}")
        toxics = [
            {"name": f"bench-{tag}-{stream}", "type": kind, "stream": stream, "attributes": attrs}
            for stream, kind, attrs in specs
        ]
        names = [t["name"] for t in toxics]
        return AppliedFault("http-api", fault.type, target, {"proxy": proxy, "toxics": toxics},
                            {"proxy": proxy, "remove_toxics": names})  # fmt: skip

    async def apply(self, record: AppliedFault) -> None:
        for toxic in record.params["toxics"]:
            response = await self.http.post(f"/proxies/{record.params['proxy']}/toxics", json=toxic)
            response.raise_for_status()

    async def revert(self, record: AppliedFault) -> None:
        for name in record.undo["remove_toxics"]:
            response = await self.http.delete(f"/proxies/{record.undo['proxy']}/toxics/{name}")
            if response.status_code != 404:
                response.raise_for_status()

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class ProxyLab:
    """``chaoskit proxy`` in a child process, an echo server behind one of its proxies."""

    url: str
    port: int
    target: Target
    driver: Any
    how: str

    @classmethod
    @contextlib.contextmanager
    def open(cls, lab: Lab) -> Iterator[ProxyLab]:
        argv = [sys.executable, "-m", "chaoskit", "proxy", "--port", "0"]
        echo = _EchoServer(("127.0.0.1", 0), _EchoHandler)
        serving = threading.Thread(target=echo.serve_forever, daemon=True)
        serving.start()
        try:
            with child(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as server:
                assert server.stdout is not None
                line = server.stdout.readline().decode()
                found = re.search(r"http://[\w.:\[\]]+", line)
                if not found:
                    raise RuntimeError(f"chaoskit proxy did not say where it listens: {line!r}")
                url = found.group(0)
                name = f"bench-{lab.suffix}"
                upstream = f"127.0.0.1:{echo.server_address[1]}"
                driver, how = _toxiproxy_driver(url, lab.raw_api)
                port = lab.run(_create_proxy(url, name, upstream))
                target = Target("proxy", name, {}, {"url": url, "proxy": name})
                try:
                    yield cls(url, port, target, driver, how)
                finally:
                    lab.run(driver.aclose())
        finally:
            echo.shutdown()
            echo.server_close()


def _toxiproxy_driver(url: str, raw: bool) -> tuple[Any, str]:
    """chaoskit's ToxiproxyDriver if this tree has it (and it is wanted), else the raw API."""
    if not raw:
        try:
            from chaoskit.drivers.toxiproxy import ToxiproxyDriver  # noqa: PLC0415
        except ImportError:
            pass
        else:
            return ToxiproxyDriver(url), "toxiproxy"
    return RawToxiproxy(url), "HTTP API"


async def _create_proxy(url: str, name: str, upstream: str) -> int:
    import httpx  # noqa: PLC0415

    body = {"name": name, "listen": "127.0.0.1:0", "upstream": upstream}
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as http:
        response = await http.post("/proxies", json=body)
        response.raise_for_status()
        return int(response.json()["listen"].rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GIVE_UP_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trip(sock: socket.socket, timeout: float) -> tuple[float, float] | None:
    """Echo one byte; (sent, arrived) or None if no answer came within ``timeout``."""
    sock.settimeout(timeout)
    sent = now()
    try:
        sock.sendall(b"x")
        if sock.recv(1) != b"x":
            raise RuntimeError("the echo through the proxy closed or garbled")
    except TimeoutError:
        return None
    return sent, now()


def proxy_latency(lab: Lab, tries: int) -> Tries:
    box = lab.proxy()
    out = Tries()
    late = LATENCY_MS / 1e3 * 0.8
    for _ in range(tries):
        with connect(box.port) as sock:
            healthy = round_trip(sock, 1.0)
            if healthy is None or healthy[1] - healthy[0] >= late:
                raise RuntimeError("round trips through the proxy are slow before the toxic")
            record = box.driver.plan(fault("latency", latency=f"{LATENCY_MS}ms"), box.target)
            returned = lab.timed(box.driver.apply(record), out.apply_call)
            seen = None
            while seen is None and now() < returned + GIVE_UP_S:
                sample = round_trip(sock, GIVE_UP_S)
                if sample is not None and sample[1] - sample[0] >= late:
                    seen = since(sample[0], returned)
            out.inject.append(seen)
            returned = lab.timed(box.driver.revert(record), out.revert_call)
            gone = None
            while gone is None and now() < returned + GIVE_UP_S:
                sample = round_trip(sock, GIVE_UP_S)
                if sample is not None and sample[1] - sample[0] < late / 4:
                    gone = since(sample[1], returned)
            out.revert.append(gone)
    out.notes.append(
        f"1-byte echo round trips on one open connection; late = >= {late * 1e3:g} ms, dated "
        f"when sent; gone = one under {late / 4 * 1e3:g} ms, dated when it came back"
    )
    return out


def proxy_hang(lab: Lab, tries: int) -> Tries:
    box = lab.proxy()
    out = Tries()
    for _ in range(tries):
        with connect(box.port) as sock:
            if round_trip(sock, 1.0) is None:
                raise RuntimeError("no echo through the proxy before the partition")
            record = box.driver.plan(fault("partition", mode="hang"), box.target)
            returned = lab.timed(box.driver.apply(record), out.apply_call)
            seen = None
            while seen is None and now() < returned + GIVE_UP_S:
                sent = now()
                if round_trip(sock, STALL_S) is None:
                    seen = since(sent, returned)
            out.inject.append(seen)
        returned = lab.timed(box.driver.revert(record), out.revert_call)
        out.revert.append(poll(lambda: _echoes(box.port), returned))
    out.notes.append(
        f"stalls = a 1-byte echo on an open connection gets no answer within {STALL_S * 1e3:g} "
        "ms, dated when sent; gone = an echo on a new connection comes back (removing a timeout "
        "toxic closes the connections it held)"
    )
    return out


def _echoes(port: int) -> bool:
    """Does a new connection through the proxy echo a byte? (a closed one does not)"""
    try:
        with connect(port) as sock:
            return round_trip(sock, STALL_S) is not None
    except (OSError, RuntimeError):
        return False


# --------------------------------------------------------------------------------------------
# The table


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    target_s: float
    measure: Callable[[Lab, int], Tries]
    driver: str


ROWS = (
    Row("process-pause", "SIGSTOP: ticks stop / SIGCONT: they flow", 0.010, process_pause,
        "process"),
    Row("process-crash", "SIGKILL: the child has exited", 0.010, process_crash, "process"),
    Row("process-disk", "disk_full (sandbox tmpfs): write ENOSPC", 1.0, process_disk, "process"),
    Row("clock-skew", "clock_skew +1h: time.time() is off by 1h", 1.5, clock_skew, "clock"),
    Row("docker-pause", "pause: HTTP hangs / unpause: answers", 1.0, docker_pause, "docker"),
    Row("docker-disk", "disk_full (container tmpfs): write ENOSPC", 1.0, docker_disk, "docker"),
    Row("docker-kill", "kill: HTTP fails / revert: running again", 1.0, docker_kill, "docker"),
    Row("proxy-latency", f"latency {LATENCY_MS}ms: echo comes back late", 0.010, proxy_latency,
        "toxiproxy"),
    Row("proxy-hang", "partition hang: echo stalls / flows", 0.010, proxy_hang, "toxiproxy"),
)  # fmt: skip


def select_rows(patterns: list[str]) -> list[Row]:
    """Rows whose name matches a pattern: exactly, as a prefix, or as a glob."""
    if not patterns:
        return list(ROWS)
    chosen = [
        row
        for row in ROWS
        if any(row.name == p or row.name.startswith(p) or fnmatch.fnmatch(row.name, p)
               for p in patterns)
    ]  # fmt: skip
    if not chosen:
        names = ", ".join(row.name for row in ROWS)
        raise SystemExit(f"--only {','.join(patterns)} matches no row; rows: {names}")
    return chosen


def ms(value: float) -> str:
    return f"{value * 1e3:.2f}" if value < 1 else f"{value * 1e3:.0f}"


def spread(values: list[float | None]) -> tuple[str, str]:
    """Median and max as text; the max is "never" if a try did not see the effect."""
    seen = [v for v in values if v is not None]
    if not values:
        return "n/a", "n/a"
    if not seen:
        return "never", "never"
    return ms(statistics.median(seen)), ms(max(seen)) if len(seen) == len(values) else "never"


def verdict(row: Row, tries: Tries) -> str:
    """yes: every try within the target; median: the medians are; NO: neither, or a try
    never saw the effect."""
    series = [values for values in (tries.inject, tries.revert) if values]
    complete = [[v for v in values if v is not None] for values in series]
    if any(len(seen) < len(values) for seen, values in zip(complete, series, strict=True)):
        return "NO"
    if max(max(seen) for seen in complete) <= row.target_s:
        return "yes"
    if max(statistics.median(seen) for seen in complete) <= row.target_s:
        return "median"
    return "NO"


HEADER = (
    f"{'row':<14} {'fault: effect':<43} {'driver':<10} {'tries':>5} "
    f"{'inject med':>10} {'max':>7} {'revert med':>10} {'max':>7} "
    f"{'apply call':>10} {'revert call':>11} {'target':>7} {'met':>6}"
)


def line(row: Row, driver: str, count: int, tries: Tries) -> str:
    inject_med, inject_max = spread(tries.inject)
    revert_med, revert_max = spread(tries.revert)
    apply_call = ms(statistics.median(tries.apply_call)) if tries.apply_call else "-"
    revert_call = ms(statistics.median(tries.revert_call)) if tries.revert_call else "-"
    target = f"{row.target_s * 1e3:g}ms" if row.target_s < 1 else f"{row.target_s:g}s"
    return (
        f"{row.name:<14} {row.what:<43} {driver:<10} {count:>5} "
        f"{inject_med:>10} {inject_max:>7} {revert_med:>10} {revert_max:>7} "
        f"{apply_call:>10} {revert_call:>11} {target:>7} {verdict(row, tries):>6}"
    )


def skipped(row: Row, reason: str) -> str:
    return f"{row.name:<14} {row.what:<43} {row.driver:<10} skipped: {reason}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/drivers.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("runs", nargs="?", type=int, help="same as --tries (for nox -s bench)")
    parser.add_argument("--tries", type=int, default=None, help="tries per row (default 20)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="ROW[,ROW]",
        help="rows to run: names, prefixes (docker, proxy) or globs; repeatable",
    )  # fmt: skip
    parser.add_argument("--image", help="container image to use (default: ensure_image's build)")
    parser.add_argument(
        "--raw-api", action="store_true",
        help="proxy rows through the Toxiproxy HTTP API, not chaoskit's ToxiproxyDriver",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    if args.list:
        for row in ROWS:
            print(f"{row.name:<14} {row.what}")
        return 0
    tries = args.tries or args.runs or 20
    if tries < 1:
        parser.error("--tries must be at least 1")
    rows = select_rows([p for given in args.only for p in given.split(",") if p])

    suffix = secrets.token_hex(4)
    lab = Lab(suffix, args.image, args.raw_api)
    # Ctrl-C or SIGTERM: unwind through every finally, so no container or child is left.
    signal.signal(signal.SIGTERM, _interrupt)
    lines: list[str] = []
    notes: list[str] = []
    ok = True
    try:
        for row in rows:
            print(f"{row.name}: {tries} tries ...", file=sys.stderr, flush=True)
            try:
                measured = row.measure(lab, tries)
            except Skip as exc:
                lines.append(skipped(row, str(exc)))
                continue
            driver = row.driver
            details = list(measured.notes)
            if row.driver == "toxiproxy" and (driver := lab.proxy().how) != "toxiproxy":
                details.append(
                    "toxics added through the Toxiproxy HTTP API directly, not ToxiproxyDriver"
                )
            lines.append(line(row, driver, tries, measured))
            ok &= verdict(row, measured) in ("yes", "median")
            for label, values in measured.extra.items():
                if values:
                    details.append(
                        f"{label}: median {ms(statistics.median(values))} ms, "
                        f"max {ms(max(values))} ms after the call returned"
                    )
            notes.extend(f"  {row.name}: {detail}" for detail in details)
    except KeyboardInterrupt:
        print("interrupted: everything this run made is being removed", file=sys.stderr)
        return 130
    finally:
        lab.close()
    print(f"fault drivers, time to effect after the call returned (ms), {tries} tries per row")
    print(HEADER)
    print("\n".join(lines))
    print("notes:")
    print("\n".join(notes))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
