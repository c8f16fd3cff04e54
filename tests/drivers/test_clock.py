"""Clock skew on a real process and a real container started under libfaketime: the wall
clock they report moves, then comes back — also when the revert runs in a fresh process."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest
from pydantic import TypeAdapter
from waiting import answers, wait_until

from chaoskit.drivers.base import AppliedFault, DriverError, Target
from chaoskit.drivers.clock import ClockDriver
from chaoskit.drivers.process import process_target
from chaoskit.launch.faketime import container_faketime, process_faketime
from chaoskit.model import Fault
from chaoskit.stack.launcher import free_ports


def skew(amount: str) -> Fault:
    return TypeAdapter(Fault).validate_python({"type": "clock_skew", "target": "t", "skew": amount})


def offset_of(url: str) -> float:
    """How far the server's clock (its HTTP Date header) is from ours, in seconds."""
    response = httpx.get(url, timeout=2, trust_env=False)
    return email.utils.parsedate_to_datetime(response.headers["date"]).timestamp() - time.time()


def revert_in_fresh_process(record: AppliedFault) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from chaoskit.drivers.base import AppliedFault\n"
        "from chaoskit.drivers.clock import ClockDriver\n"
        "asyncio.run(ClockDriver().revert(AppliedFault.from_json(json.loads(sys.argv[1]))))\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(record.to_json())], check=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Target, str]]:
    """An HTTP server started under libfaketime (its Date header shows its wall clock)."""
    skew_file = tmp_path / "skew" / "web"
    env = process_faketime(skew_file)
    [port] = free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: answers(url), 10, "the server under libfaketime to answer")
        yield process_target(process.pid, "web", faketime=str(skew_file)), url
    finally:
        process.terminate()
        process.wait()


def test_skew_moves_the_wall_clock_and_the_revert_brings_it_back(
    server: tuple[Target, str],
) -> None:
    target, url = server
    assert abs(offset_of(url)) < 2
    driver = ClockDriver()
    record = driver.plan(skew("+1h"), target)
    asyncio.run(driver.apply(record))
    assert abs(offset_of(url) - 3600) < 2  # no wait: the file is read on every clock call
    asyncio.run(driver.revert(record))
    assert abs(offset_of(url)) < 2
    backwards = driver.plan(skew("-90m"), target)
    asyncio.run(driver.apply(backwards))
    assert abs(offset_of(url) + 5400) < 2
    revert_in_fresh_process(AppliedFault.from_json(backwards.to_json()))
    assert abs(offset_of(url)) < 2
    asyncio.run(driver.revert(backwards))  # twice is fine
    assert abs(offset_of(url)) < 2


def test_revert_after_the_target_and_its_folder_are_gone(tmp_path: Path) -> None:
    skew_file = tmp_path / "gone" / "web"
    process_faketime(skew_file)
    target = Target("process", "web", {}, {"pid": 1, "start": 0, "faketime": str(skew_file)})
    record = ClockDriver().plan(skew("+5m"), target)
    skew_file.unlink()
    skew_file.parent.rmdir()
    asyncio.run(ClockDriver().revert(record))
    assert not skew_file.parent.exists()


def test_a_target_not_under_libfaketime_is_refused(tmp_path: Path) -> None:
    plain = Target("process", "plain", {}, {"pid": 1, "start": 0})
    with pytest.raises(DriverError, match="faketime: true"):
        ClockDriver().plan(skew("+5m"), plain)
    missing = Target("process", "x", {}, {"pid": 1, "start": 0, "faketime": str(tmp_path / "no")})
    with pytest.raises(DriverError, match="skew file of x is missing"):
        ClockDriver().plan(skew("+5m"), missing)


@pytest.mark.docker
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_skew_in_a_container_shows_in_date_inside(
    docker_client: Any, stack_image: str, tmp_path: Path
) -> None:
    name = f"clock-{uuid.uuid4().hex[:8]}"
    env, volumes, skew_file = container_faketime(tmp_path / "skew", name)
    container = docker_client.containers.run(
        stack_image,
        ["-m", "http.server", "8000"],
        entrypoint=["python3"],
        name=name,
        environment=env,
        volumes=volumes,
        detach=True,
        labels={"chaoskit.test": name},
    )
    try:

        def inside() -> float:
            out = subprocess.run(
                ["docker", "exec", name, "date", "+%s"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, out.stderr
            return float(out.stdout) - time.time()

        wait_until(lambda: container.reload() or container.status == "running", 30, "start")
        assert abs(inside()) < 3
        target = Target("container", name, {}, {"id": container.id, "faketime": str(skew_file)})
        record = ClockDriver().plan(skew("-2h"), target)
        asyncio.run(ClockDriver().apply(record))
        assert abs(inside() + 7200) < 3
        revert_in_fresh_process(record)
        assert abs(inside()) < 3
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
