"""The pytest plugin: ``pytest experiments/`` passes a HELD experiment and fails a DEVIATED one
with its summary (pytester, real runs); the ``chaos`` fixture's faults are taken back even when
the test body raises, are journaled first, and are taken back by the watchdog when pytest itself
is SIGKILLed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from echo import Echo
from waiting import wait_until
from web_experiment import SLOWED, web_experiment

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
    assert "Traceback" not in result.stdout.str()
    assert len(list(reports.glob("*/report.html"))) == 2
    assert (reports / "history.db").exists()


@pytest.fixture(scope="session")
def chaos_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosJournal]:
    """The plugin's own journal, kept under a temporary folder so this suite can read it."""
    journal = ChaosJournal(tmp_path_factory.mktemp("chaos-reports"))
    yield journal
    journal.close()


@pytest.fixture
def web(chaos: Chaos) -> Iterator[str]:
    """An echo server behind proxy 'web' on the session's embedded proxy; its address."""
    echo = Echo()
    yield chaos.proxy("web", upstream=echo.address)
    echo.listener.close()


def _round_trip(address: str) -> float:
    import socket

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
    with pytest.raises(ValueError, match="a container name or pid"):
        chaos.crash()


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
        assert read_journal(journal).pending == []
    finally:
        if inner.poll() is None:
            inner.send_signal(signal.SIGKILL)
            inner.wait()
        sleeper.kill()
        sleeper.wait()


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]
