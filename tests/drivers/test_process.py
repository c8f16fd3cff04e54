"""Crash and pause on real local processes; reverts from the journal record alone, in a fresh
process, twice, and after the target died."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import TypeAdapter
from waiting import answers, post_item, wait_until

from chaoskit.drivers.base import AppliedFault, DriverError
from chaoskit.drivers.process import ProcessDriver, process_target, start_ticks
from chaoskit.launch import sandbox
from chaoskit.model import Fault
from chaoskit.stack.launcher import free_ports
from chaoskit.units import Size

# A child that prints a counter every 10 ms: progress is visible from outside.
TICKER = (
    "import sys, time\nwhile True:\n    print(time.monotonic(), flush=True)\n    time.sleep(0.01)\n"
)


def fault(kind: str, **fields: object) -> Fault:
    """One fault, validated on its own (the experiment-level checks are tested elsewhere)."""
    return TypeAdapter(Fault).validate_python({"type": kind, "target": "t", **fields})


@pytest.fixture
def ticker(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", TICKER], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.readline()  # started
    yield process
    process.kill()
    process.wait()
    process.stdout.close()


def ticking(process: subprocess.Popen[str], within: float) -> bool:
    """Does the child print within ``within`` seconds? (reads its pipe with a timeout)"""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if sel.select(timeout=deadline - time.monotonic()):
                return bool(process.stdout.readline())
    return False


def drain(process: subprocess.Popen[str]) -> None:
    while ticking(process, 0.001):
        pass


def revert_in_fresh_process(record: AppliedFault) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from chaoskit.drivers.base import AppliedFault\n"
        "from chaoskit.drivers.process import ProcessDriver\n"
        "record = AppliedFault.from_json(json.loads(sys.argv[1]))\n"
        "asyncio.run(ProcessDriver().revert(record))\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(record.to_json())], check=True)


def test_pause_stops_progress_and_a_fresh_process_resumes_it(ticker: subprocess.Popen[str]) -> None:
    driver = ProcessDriver()
    record = driver.plan(fault("pause"), process_target(ticker.pid, "ticker"))
    journal = json.dumps(record.to_json())  # what the runner writes before applying
    asyncio.run(driver.apply(record))
    drain(ticker)
    assert not ticking(ticker, 0.3)
    revert_in_fresh_process(AppliedFault.from_json(json.loads(journal)))
    assert ticking(ticker, 1.0)
    asyncio.run(driver.revert(record))  # twice is harmless
    assert ticking(ticker, 1.0)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGSEGV"])
def test_crash_sends_the_signal(ticker: subprocess.Popen[str], sig: str) -> None:
    driver = ProcessDriver()
    record = driver.plan(fault("crash", signal=sig), process_target(ticker.pid))
    asyncio.run(driver.apply(record))
    assert ticker.wait(5) == -getattr(__import__("signal"), sig)
    asyncio.run(driver.revert(record))  # nothing to take back, and no error on a dead target


def test_revert_after_the_target_died_does_nothing(ticker: subprocess.Popen[str]) -> None:
    driver = ProcessDriver()
    record = driver.plan(fault("pause"), process_target(ticker.pid))
    asyncio.run(driver.apply(record))
    ticker.kill()
    ticker.wait()
    asyncio.run(driver.revert(record))
    revert_in_fresh_process(record)


def test_a_reused_pid_is_never_signalled(ticker: subprocess.Popen[str]) -> None:
    driver = ProcessDriver()
    target = process_target(ticker.pid)
    planned = driver.plan(fault("pause"), target).to_json()
    reused = {"pid": ticker.pid, "start": target.ref["start"] + 1}  # same pid, other process
    forged = AppliedFault.from_json({**planned, "target": {**target.to_json(), "ref": reused}})
    with pytest.raises(DriverError, match="exited before"):
        asyncio.run(driver.apply(forged))
    assert ticking(ticker, 1.0)


def test_bad_targets_are_clear_errors() -> None:
    with pytest.raises(DriverError, match="no process with pid"):
        process_target(2**22 + 12345)
    assert start_ticks(2**22 + 12345) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="a mount namespace needs root")
def test_disk_full_fills_the_sandbox_tmpfs_and_the_revert_empties_it(tmp_path: Path) -> None:
    [port] = free_ports(1)
    data = str(tmp_path / "data")
    argv = sandbox.command(
        [sys.executable, "-m", "chaoskit.stack.backend", "--name", "b", "--port", str(port),
         "--data-dir", data],
        data,
        Size.parse("1MiB"),
    )  # fmt: skip
    backend = subprocess.Popen(argv)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/health/ready"), 15, "the sandboxed backend")
        assert post_item(url) == 201
        assert not any((tmp_path / "data").iterdir())  # the tmpfs is not visible on the host
        driver = ProcessDriver()
        record = driver.plan(
            fault("disk_full", leave="0B"), process_target(backend.pid, tmpfs=data)
        )
        asyncio.run(driver.apply(record))
        assert post_item(url) == 507
        assert httpx.get(f"{url}/items", trust_env=False).status_code == 200
        revert_in_fresh_process(record)
        assert post_item(url) == 201
        asyncio.run(driver.revert(record))  # twice is harmless
        half = driver.plan(fault("disk_full", free="50%"), process_target(backend.pid, tmpfs=data))
        asyncio.run(driver.apply(half))
        stat = os.statvfs(f"/proc/{backend.pid}/root{data}")
        assert 0.45 <= stat.f_bavail / stat.f_blocks <= 0.55
        asyncio.run(driver.revert(half))
    finally:
        backend.terminate()
        backend.wait(10)


def test_disk_full_needs_a_sandboxed_process(ticker: subprocess.Popen[str]) -> None:
    with pytest.raises(DriverError, match="was not started in a sandbox"):
        ProcessDriver().plan(fault("disk_full", leave="0B"), process_target(ticker.pid))


def test_disk_full_never_fills_a_real_disk(ticker: subprocess.Popen[str], tmp_path: Path) -> None:
    driver = ProcessDriver()
    target = process_target(ticker.pid, tmpfs=str(tmp_path))  # a claimed tmpfs that is not one
    record = driver.plan(fault("disk_full", leave="0B", path=str(tmp_path)), target)
    with pytest.raises(DriverError, match="not a tmpfs mount"):
        asyncio.run(driver.apply(record))
    assert not any(tmp_path.iterdir())


def test_a_sandbox_this_machine_cannot_give_fails_the_part_and_is_not_a_bug(
    tmp_path: Path,
) -> None:
    """Without root, the mount namespace is refused: the sandbox says so and exits 6 (the part
    did not come up), never 70 (a bug in chaoskit). Run as nobody with setpriv."""
    argv = sandbox.command(["true"], str(tmp_path / "data"), Size.parse("1MiB"))
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    assert "chaoskit sandbox: " in done.stderr and "(needs root)" in done.stderr


def test_a_process_cannot_be_kept_down_since_nothing_could_start_it_again(
    ticker: subprocess.Popen[str],
) -> None:
    with pytest.raises(DriverError, match="keep_down needs a container"):
        ProcessDriver().plan(fault("crash", keep_down=True), process_target(ticker.pid))
    assert ticker.poll() is None, "nothing was touched"
