"""The pytest plugin: ``pytest experiments/`` passes a HELD experiment and fails a DEVIATED one
with its summary (pytester, real runs); the ``chaos`` fixture's faults, in each form
docs/pytest.md shows them, act on a real proxy, process or container and are taken back even
when the test body raises, are journaled first, and are taken back by the watchdog when pytest
itself is SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from echo import Echo
from processes import alive, sleeper, state_of
from pydantic import TypeAdapter
from waiting import wait_until
from web_experiment import SLOWED, web_experiment

from chaoskit.drivers.base import AppliedFault
from chaoskit.drivers.toxiproxy import ToxiproxyDriver, proxy_target
from chaoskit.model import Fault
from chaoskit.proxy import ProxyServer
from chaoskit.pytest_plugin import Chaos, ChaosJournal
from chaoskit.runner.journal import read_journal

pytest_plugins = ["pytester"]


@pytest.mark.slow
@pytest.mark.long
def test_pytest_runs_experiment_files_held_passes_and_deviated_fails(
    pytester: pytest.Pytester,
) -> None:
    folder = pytester.path
    for name, fault in (
        ("idle-paused", "{type: pause, target: idle}"),  # nothing the load touches
        ("web-slowed", SLOWED),
    ):
        (folder / f"{name}.yaml").write_text(
            web_experiment(name, folder, fault=fault, rate="50/s", margin="100%", idle=True)
        )
    (folder / "not-an-experiment.yaml").write_text("just: data\n")
    reports = folder / "chaos-reports"
    result = pytester.runpytest_subprocess(str(folder), "--chaos-report-dir", str(reports), "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*idle-paused.yaml::idle-paused PASSED*",
                                 "*web-slowed.yaml::web-slowed FAILED*"])  # fmt: skip
    result.stdout.fnmatch_lines(["*chaoskit: web-slowed*DEVIATED*", "*| p50 | DEVIATED |*"])
    written = (folder / "web-slowed.yaml").read_text().splitlines()
    p50 = next(i for i, line in enumerate(written, 1) if "name: p50" in line)
    result.stdout.re_match_lines([rf"web-slowed\.yaml:{p50}:\d+: steady_state\[0\]: p50: deviated"])
    assert "Traceback" not in result.stdout.str()
    assert len(list(reports.glob("*/report.html"))) == 2
    assert (reports / "history.db").exists()


@pytest.fixture
def web(chaos: Chaos) -> Iterator[str]:
    """An echo server behind proxy 'web' on the session's embedded proxy; its address."""
    echo = Echo()
    yield chaos.proxy("web", upstream=echo.address)
    echo.listener.close()


def _round_trip(address: str) -> float:
    host, port = address.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"
    return time.perf_counter() - start


def _toxics(proxy: ProxyServer, name: str) -> list[object]:
    listed: list[object] = httpx.get(f"{proxy.url}/proxies/{name}/toxics", trust_env=False).json()
    return listed


def test_latency_is_taken_back_even_when_the_body_raises(
    chaos: Chaos, chaos_proxy: ProxyServer, web: str
) -> None:
    def slowed_body_that_fails() -> None:
        with chaos.latency("web", "300ms"):
            assert len(_toxics(chaos_proxy, "web")) == 1
            assert _round_trip(web) >= 0.3
            raise RuntimeError("the body failed")

    with pytest.raises(RuntimeError, match="the body failed"):
        slowed_body_that_fails()
    assert _toxics(chaos_proxy, "web") == []
    assert _round_trip(web) < 0.3


def test_each_fault_is_journaled_before_it_is_applied_and_its_revert_after(
    chaos: Chaos, chaos_journal: ChaosJournal, web: str
) -> None:
    with chaos.latency("web", "50ms") as record:
        path = chaos_journal.journal().path
        assert [r.id for r in read_journal(path).pending] == [record.id]
    events = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [e for e in events if record.id in (e.get("id"), e.get("fault", {}).get("id"))]
    assert [e["event"] for e in mine] == ["inject", "applied", "revert"]
    assert mine[-1]["ok"] is True
    assert read_journal(path).pending == []


def test_a_paused_process_is_resumed_even_when_the_body_raises(chaos: Chaos) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        wait_until(lambda: _state(sleeper.pid) in "SR", 5, "the sleeper to start")

        def paused_body_that_fails() -> None:
            with chaos.pause(pid=sleeper.pid):
                wait_until(lambda: _state(sleeper.pid) == "T", 2, "SIGSTOP to land")
                raise KeyError("boom")

        with pytest.raises(KeyError):
            paused_body_that_fails()
        wait_until(lambda: _state(sleeper.pid) != "T", 2, "SIGCONT to land")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_fault_on_a_missing_proxy_fails_before_the_body_and_leaves_nothing(
    chaos: Chaos, chaos_proxy: ProxyServer
) -> None:
    entered = False
    with pytest.raises(Exception, match="nope"), chaos.partition("nope"):
        entered = True
    assert not entered
    with pytest.raises(ValueError, match="a proxy or container name"), chaos.crash():
        entered = True
    with (
        pytest.raises(ValueError, match="applied on a proxy"),
        chaos.fault("latency", pid=os.getpid(), latency="10ms"),
    ):
        entered = True
    assert not entered


HELD_BY_A_TEST = """
import time
from pathlib import Path

def test_hold(chaos):
    with chaos.pause(pid={pid}):
        Path({ready!r}).write_text("paused")
        time.sleep(120)
"""


def test_a_sigkilled_pytest_leaves_no_paused_process_behind(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    ready = tmp_path / "ready"
    test_file = tmp_path / "test_hold.py"
    test_file.write_text(HELD_BY_A_TEST.format(pid=sleeper.pid, ready=str(ready)))
    reports = tmp_path / "reports"
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file),
         "--chaos-report-dir", str(reports)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(ready.exists, 30, "the inner test to pause the sleeper")
        assert _state(sleeper.pid) == "T"
        inner.kill()  # SIGKILL: pytest runs no finaliser, only the watchdog can take it back
        inner.wait()
        wait_until(lambda: _state(sleeper.pid) != "T", 2, "the watchdog to resume the sleeper")
        (journal,) = reports.glob("pytest-*/journal.jsonl")
        # The watchdog resumes the sleeper first and records that next: await the record.
        wait_until(lambda: read_journal(journal).pending == [], 5, "the revert in the journal")
    finally:
        if inner.poll() is None:
            inner.send_signal(signal.SIGKILL)
            inner.wait()
        sleeper.kill()
        sleeper.wait()


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


# -- each call form docs/pytest.md shows, on real parts ------------------------------------------

Form = Callable[[Chaos], AbstractContextManager[AppliedFault]]


def _transfer(address: str, size: int) -> float:
    """Seconds to send ``size`` bytes through ``address`` to the echo server and read them back."""
    host, port = address.rsplit(":", 1)
    start = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"x" * size)
        received = 0
        while received < size:
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the connection"
            received += len(chunk)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda chaos: chaos.bandwidth("web", "100kB/s"), id="bandwidth"),
        pytest.param(lambda chaos: chaos.fault("bandwidth", "web", rate="100kB/s"), id="fault"),
    ],
)
def test_bandwidth_limits_the_proxy_by_name_in_both_forms(
    chaos: Chaos, chaos_proxy: ProxyServer, web: str, form: Form
) -> None:
    with form(chaos):
        [toxic] = _toxics(chaos_proxy, "web")
        assert toxic["type"] == "bandwidth"  # type: ignore[index]
        assert _transfer(web, 60_000) >= 0.4  # 60 kB at 100 kB/s
    assert _toxics(chaos_proxy, "web") == []
    assert _transfer(web, 60_000) < 0.4


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda chaos: chaos.latency("web", "300ms"), id="latency"),
        pytest.param(lambda chaos: chaos.fault("latency", "web", latency="300ms"), id="fault"),
    ],
)
def test_latency_slows_the_proxy_by_name_in_both_forms(chaos: Chaos, web: str, form: Form) -> None:
    with form(chaos):
        assert _round_trip(web) >= 0.3
    assert _round_trip(web) < 0.3


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda chaos: chaos.partition("web", mode="refuse"), id="partition"),
        pytest.param(lambda chaos: chaos.fault("partition", "web", mode="refuse"), id="fault"),
    ],
)
def test_a_refusing_partition_refuses_until_the_block_ends(
    chaos: Chaos, web: str, form: Form
) -> None:
    with form(chaos), pytest.raises(ConnectionRefusedError):
        _round_trip(web)
    assert _round_trip(web) < 0.3


def test_crash_and_fault_take_a_process_by_pid(chaos: Chaos) -> None:
    with sleeper() as pid, chaos.crash(pid=pid):
        wait_until(lambda: not alive(pid), 5, "SIGKILL to land")
    with sleeper() as pid:
        with chaos.fault("pause", pid=pid):
            wait_until(lambda: state_of(pid) == "T", 5, "SIGSTOP to land")
        wait_until(lambda: state_of(pid) != "T", 5, "SIGCONT to land")


def test_the_toxiproxy_fixture_drives_the_embedded_proxy_from_async_code(
    toxiproxy: ToxiproxyDriver, chaos_proxy: ProxyServer, web: str
) -> None:
    fault: Any = TypeAdapter(Fault).validate_python(
        {"type": "latency", "target": "web", "latency": "300ms"}
    )

    async def slowed_round_trip() -> float:
        record = toxiproxy.plan(fault, proxy_target(chaos_proxy.url, "web"))
        await toxiproxy.apply(record)
        try:
            return await asyncio.to_thread(_round_trip, web)
        finally:
            await toxiproxy.revert(record)
            await toxiproxy.aclose()

    assert asyncio.run(slowed_round_trip()) >= 0.3
    assert _toxics(chaos_proxy, "web") == []


def _with_libraries(program: str) -> list[str]:
    """``program`` and the shared libraries it loads (ldd), as absolute paths."""
    listed = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    found = [program]
    for line in listed.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/"):
            found.append(path)
    return found


@pytest.fixture(scope="module")
def sleep_image(docker_client: Any) -> Iterator[str]:
    """An image holding only this machine's ``sleep`` and its libraries, imported locally (no
    registry is contacted)."""
    program = shutil.which("sleep")
    assert program is not None
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in _with_libraries(program):
            tar.add(Path(path).resolve(), arcname=path.lstrip("/"))
    repository = "chaoskit-test/sleep"
    docker_client.api.import_image_from_data(archive.getvalue(), repository=repository, tag="1")
    yield f"{repository}:1"
    docker_client.images.remove(f"{repository}:1", force=True)


@pytest.fixture
def container(docker_client: Any, sleep_image: str) -> Iterator[str]:
    """A running container of ``sleep 600``; its name."""
    name = f"chaoskit-test-{secrets.token_hex(3)}"
    made = docker_client.containers.run(sleep_image, ["sleep", "600"], name=name, detach=True)
    try:
        yield name
    finally:
        made.remove(force=True)


@pytest.mark.docker
def test_crash_pause_and_fault_take_a_container_by_name(
    chaos: Chaos, docker_client: Any, container: str
) -> None:
    def status() -> str:
        found: str = docker_client.containers.get(container).status
        return found

    with chaos.crash(container):
        wait_until(lambda: status() == "exited", 10, "the container to be killed")
    assert status() == "running"  # restarted on the way out
    with chaos.pause(container):
        assert status() == "paused"
    assert status() == "running"
    with chaos.fault("pause", container):
        assert status() == "paused"
    assert status() == "running"


def test_a_fault_that_cannot_be_taken_back_fails_naming_the_journal_that_keeps_it(
    tmp_path: Path,
) -> None:
    from chaoskit.drivers.base import DriverError
    from chaoskit.proxy import run_in_thread

    journal = ChaosJournal(tmp_path / "reports", revert_patience=1.0)
    try:
        with contextlib.ExitStack() as server_running:
            server = server_running.enter_context(run_in_thread())
            chaos = Chaos(server.url, journal, revert_patience=1.0)
            chaos.proxy("doomed", upstream="127.0.0.1:9")
            with (
                pytest.raises(DriverError, match=r"`chaoskit rollback \S+/journal\.jsonl`"),
                chaos.latency("doomed", "10ms"),
            ):
                server_running.close()  # the server goes: the latency cannot be reverted
    finally:
        journal.close()
    (path,) = (tmp_path / "reports").glob("pytest-*/journal.jsonl")
    assert [record.fault for record in read_journal(path).pending] == ["latency"]
