"""A proxy placed in front of a real process's port and a real container's published port:
a latency fault on it reaches their clients, and its revert takes it away."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from waiting import answers, wait_until

from chaoskit.drivers.base import DriverError, Target
from chaoskit.drivers.front import place_front, remove_front, upstream_address
from chaoskit.drivers.process import process_target
from chaoskit.drivers.toxiproxy import ToxiproxyClient, ToxiproxyDriver
from chaoskit.model import Fault
from chaoskit.proxy import ProxyServer, run_in_thread
from chaoskit.stack.launcher import free_ports

LATENCY = TypeAdapter(Fault).validate_python({"type": "latency", "target": "t", "latency": "300ms"})


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with run_in_thread() as running:
        yield running


def slowest_of(url: str, tries: int = 3) -> float:
    """The slowest of a few fresh-connection GETs (each pays the downstream latency)."""
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        assert httpx.get(url, timeout=5, trust_env=False).status_code == 200
        times.append(time.perf_counter() - start)
    return min(times)


def fault_through_front(
    server: ProxyServer, target: Target, port: int, docker_client: Any = None
) -> None:
    async def scenario() -> None:
        async with ToxiproxyClient(server.url) as client, ToxiproxyDriver(server.url) as driver:
            front = await place_front(client, target, port, docker_client=docker_client)
            assert front.name == target.name and front.ref["in_front_of"]["kind"] == target.kind
            again = await place_front(client, target, port, docker_client=docker_client)
            assert again.ref["proxy"] == front.ref["proxy"]  # placing twice reuses it
            url = f"http://{front.ref['listen']}/"
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, slowest_of, url) < 0.25
            record = driver.plan(LATENCY, front)
            await driver.apply(record)
            assert await loop.run_in_executor(None, slowest_of, url) >= 0.3
            await driver.revert(record)
            assert await loop.run_in_executor(None, slowest_of, url) < 0.25
            await remove_front(client, front)
            await remove_front(client, front)  # twice is fine
            assert await client.proxies() == {}

    asyncio.run(scenario())


def test_a_proxy_in_front_of_a_process_port(server: ProxyServer) -> None:
    [port] = free_ports(1)
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 10, "the web process")
        fault_through_front(server, process_target(web.pid, "web"), port)
    finally:
        web.terminate()
        web.wait()


def test_a_proxy_target_needs_no_front() -> None:
    with pytest.raises(DriverError, match="needs no proxy in front"):
        upstream_address(Target("proxy", "p", {}, {}), 80)


@pytest.mark.docker
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_proxy_in_front_of_a_container_port(
    server: ProxyServer, docker_client: Any, stack_image: str
) -> None:
    [port] = free_ports(1)
    name = f"front-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        stack_image,
        ["http.server", "8000"],
        name=name,
        ports={"8000/tcp": ("127.0.0.1", port)},
        detach=True,
        labels={"chaoskit.test": name},
    )
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 30, "the web container")
        target = Target("container", name, {}, {"id": container.id})
        assert upstream_address(target, 8000, docker_client) == f"127.0.0.1:{port}"
        fault_through_front(server, target, 8000, docker_client)
    finally:
        container.remove(force=True)
