"""The stack's services as real processes: restarts that obey the backoff law, a frontend that
keeps answering while a backend is down, writes that fail on a full disk and recover, tokens
that a skewed clock rejects."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from waiting import answers, get_json, post_item, wait_until

from chaoskit.stack.backend import BackendConfig, check_token, issue_token
from chaoskit.stack.backoff import RestartBackoff
from chaoskit.stack.launcher import free_ports, plan, run_stack
from chaoskit.stack.supervisor import Replica, Supervisor


def test_sigkilled_backend_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    stack = plan(replicas=2, proxies=False, data_root=tmp_path)
    stack.backoff = (0.3, 2.0, 60.0)
    with run_stack(stack):
        supervisor = f"http://127.0.0.1:{stack.supervisor}"
        for round_ in range(3):
            status = get_json(f"{supervisor}/status")
            pid = status["replicas"][0]["pid"]  # type: ignore[index]
            os.kill(pid, signal.SIGKILL)
            wait_until(
                lambda n=round_ + 1: len(get_json(f"{supervisor}/history")) == n,  # type: ignore[arg-type]
                10,
                f"restart {round_ + 1}",
            )
        history = get_json(f"{supervisor}/history")
    assert isinstance(history, list) and len(history) == 3
    previous = None
    for event in history:
        assert event["replica"] == "backend-1" and "SIGKILL" in event["cause"]
        assert 0.3 <= event["wait"] <= 2.0
        if previous is not None:
            assert event["wait"] <= max(0.3, 3 * previous) + 1e-9
        observed = event["restarted_at"] - event["crashed_at"]
        assert event["wait"] <= observed <= event["wait"] + 0.5
        previous = event["wait"]


def test_a_backend_that_crashes_on_start_is_restarted_with_growing_waits() -> None:
    async def scenario() -> list[float]:
        replica = Replica(
            "doomed",
            [sys.executable, "-c", "import sys; sys.exit(3)"],
            "http://127.0.0.1:9",
            RestartBackoff(0.05, 1.0, cooldown=60.0, rng=random.Random(5)),
        )  # seeded: whether the jitter has climbed by the fifth wait is itself random
        supervisor = Supervisor([replica], check_interval=0.05)
        task = asyncio.create_task(supervisor.run())
        while len(replica.history) < 8:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert all(e.cause == "exited with code 3" for e in replica.history)
        gaps = [e.restarted_at - e.crashed_at for e in replica.history]
        assert min(gaps) >= 0.05 - 0.005  # never faster than the minimum
        return [e.wait for e in replica.history]

    waits = asyncio.run(scenario())
    assert waits[0] == 0.05
    assert max(waits[4:]) > 0.15  # the decorrelated jitter climbs while it keeps crashing


SLOW_START = """
import http.server, sys, time
time.sleep(float(sys.argv[2]))  # a Python service starting on a loaded machine
class Live(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Live).serve_forever()
"""


@pytest.mark.parametrize(("grace", "restarted"), [(30.0, False), (0.0, True)])
def test_a_slow_starting_backend_gets_its_start_grace(grace: float, restarted: bool) -> None:
    """Without the grace, three failed checks 0.1 s apart kill a backend that needs 2 s to
    start; with it, the backend comes up and is never restarted."""
    [port] = free_ports(1)

    async def scenario() -> Replica:
        replica = Replica(
            "slow",
            [sys.executable, "-c", SLOW_START, str(port), "2"],
            f"http://127.0.0.1:{port}",
            RestartBackoff(0.05, 0.05, cooldown=60.0),
        )
        supervisor = Supervisor([replica], check_interval=0.1, start_grace=grace)
        task = asyncio.create_task(supervisor.run())
        deadline = time.monotonic() + 30
        while not replica.ready and not replica.history and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return replica

    replica = asyncio.run(scenario())
    if restarted:
        assert replica.history and "unhealthy" in replica.history[0].cause
    else:
        assert replica.ready and replica.history == []


def test_frontend_keeps_answering_and_its_breaker_opens_then_closes(tmp_path: Path) -> None:
    stack = plan(replicas=3, proxies=False, data_root=tmp_path)
    stack.backoff = (4.0, 4.0, 60.0)  # the killed backend stays down for 4 s
    with run_stack(stack), httpx.Client(trust_env=False, timeout=3) as client:
        frontend = f"http://127.0.0.1:{stack.frontend}"
        supervisor = f"http://127.0.0.1:{stack.supervisor}"
        assert client.get(f"{frontend}/items").status_code == 200
        victim = get_json(f"{supervisor}/status")["replicas"][1]  # type: ignore[index]
        os.kill(victim["pid"], signal.SIGKILL)
        statuses, served_by = [], set()
        opened = False
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            answer = client.get(f"{frontend}/items")
            statuses.append(answer.status_code)
            served_by.add(answer.headers.get("X-Backend"))
            opened |= get_json(f"{frontend}/status")["breakers"]["backend-2"] == "open"  # type: ignore[index]
        assert statuses and all(code == 200 for code in statuses)
        assert opened, "the breaker for the dead backend never opened"
        assert "backend-2" not in served_by

        def closed_again() -> bool:
            client.get(f"{frontend}/items")
            return get_json(f"{frontend}/status")["breakers"]["backend-2"] == "closed"  # type: ignore[index]

        wait_until(closed_again, 20, "the breaker to close after the backend returned", step=0.1)
        metrics = client.get(f"{frontend}/metrics").text
        assert 'frontend_breaker_opened{backend="backend-2"}' in metrics


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk_fails_writes_with_507_keeps_reads_and_recovers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)], check=True)
    [port] = free_ports(1)
    argv = [sys.executable, "-m", "chaoskit.stack.backend", "--name", "b", "--port", str(port),
            "--data-dir", str(data)]  # fmt: skip
    backend = subprocess.Popen(argv)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{url}/health/ready"), 10, "the backend to start")
        assert post_item(url) == 201
        balloon = data / "balloon"
        _fill(balloon)
        assert post_item(url) == 507
        listing = httpx.get(f"{url}/items", trust_env=False)
        assert listing.status_code == 200 and len(listing.json()["items"]) == 1
        balloon.unlink()
        assert post_item(url) == 201
        assert (
            "backend_write_failures_total 1.0" in httpx.get(f"{url}/metrics", trust_env=False).text
        )
    finally:
        backend.terminate()
        backend.wait(10)
        subprocess.run(["umount", str(data)], check=True)


def _fill(path: Path) -> None:
    """Write zeros until the file system says it is full."""
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


def test_tokens_are_checked_against_the_wall_clock(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    honest = BackendConfig("a", tmp_path, clock=lambda: now)
    ahead = BackendConfig("b", tmp_path, clock=lambda: now + 600)  # +10 min skew
    behind = BackendConfig("c", tmp_path, clock=lambda: now - 600)
    token, _ = issue_token(honest)
    assert check_token(honest, token) is None
    assert check_token(ahead, token) == "expired"
    assert check_token(behind, token) == "not_yet_valid"
    assert check_token(honest, issue_token(ahead)[0]) == "not_yet_valid"
    assert check_token(honest, token[:-1] + ("0" if token[-1] != "0" else "1")) == "bad_signature"


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")
def test_backends_can_keep_their_data_on_a_private_tmpfs(tmp_path: Path) -> None:
    stack = plan(replicas=1, proxies=False, data_root=tmp_path)
    stack.tmpfs = 1024 * 1024
    with run_stack(stack):
        status = get_json(f"http://127.0.0.1:{stack.supervisor}/status")
        pid = status["replicas"][0]["pid"]  # type: ignore[index]
        inside = os.statvfs(f"/proc/{pid}/root{tmp_path}/backend-1")
        assert inside.f_blocks * inside.f_frsize == 1024 * 1024
        assert post_item(f"http://127.0.0.1:{stack.frontend}") == 201
        assert not any((tmp_path / "backend-1").iterdir())  # the host sees none of it


def test_backends_under_libfaketime_follow_their_skew_file(tmp_path: Path) -> None:
    """``faketime``: each backend reads its own skew file; skewing one moves only its clock
    (its HTTP Date header), and its restarted successor still reads the same file."""
    import asyncio as _asyncio
    import email.utils

    from pydantic import TypeAdapter

    from chaoskit.drivers.clock import ClockDriver
    from chaoskit.drivers.process import process_target
    from chaoskit.model import Fault

    stack = plan(replicas=2, proxies=False, data_root=tmp_path / "data")
    stack.faketime = tmp_path / "skew"

    def offset(port: int) -> float:
        date = httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).headers["date"]
        return email.utils.parsedate_to_datetime(date).timestamp() - time.time()

    with run_stack(stack):
        status = get_json(f"http://127.0.0.1:{stack.supervisor}/status")
        pid = status["replicas"][0]["pid"]  # type: ignore[index]
        skew_file = stack.skew_file("backend-1")
        assert skew_file is not None
        target = process_target(pid, "backend-1", faketime=str(skew_file))
        fault = TypeAdapter(Fault).validate_python(
            {"type": "clock_skew", "target": "t", "skew": "+3h"}
        )
        driver = ClockDriver()
        record = driver.plan(fault, target)
        _asyncio.run(driver.apply(record))
        first, second = stack.backends
        assert abs(offset(first) - 3 * 3600) < 3
        assert abs(offset(second)) < 3
        _asyncio.run(driver.revert(record))
        assert abs(offset(first)) < 3
