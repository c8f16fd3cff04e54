"""Preflight checks on planned faults, against a real embedded proxy: a refuse partition on a
proxy that is disabled already is refused before anything is applied (its revert would enable
it), and a proxy that does not exist is named."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from pydantic import TypeAdapter

from chaoskit.drivers.registry import Drivers
from chaoskit.drivers.toxiproxy import proxy_target
from chaoskit.model import Fault
from chaoskit.proxy import ProxyServer, run_in_thread
from chaoskit.runner.lifecycle import FaultLifecycle
from chaoskit.runner.plan import PlannedFault, PreflightError, check_planned


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with run_in_thread() as started:
        yield started


def planned(server: ProxyServer, faults: FaultLifecycle, proxy: str, **fault: str) -> PlannedFault:
    parsed = TypeAdapter(Fault).validate_python({**fault, "target": "t"})
    record = faults.plan(parsed, proxy_target(server.url, proxy))
    return PlannedFault(parsed, 0, [record], 0.0, 1.0)


def preflight(server: ProxyServer, proxy: str, **fault: str) -> None:
    async def check() -> None:
        faults = FaultLifecycle(Drivers(server.url))
        try:
            await check_planned([planned(server, faults, proxy, **fault)], faults)
        finally:
            await faults.aclose()

    asyncio.run(check())


def test_a_refuse_partition_on_a_disabled_proxy_is_refused_and_the_proxy_left_alone(
    server: ProxyServer,
) -> None:
    body = {"name": "db", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9", "enabled": False}
    assert httpx.post(f"{server.url}/proxies", json=body, trust_env=False).status_code == 201
    with pytest.raises(PreflightError, match=r"proxy 'db' at .* is disabled already"):
        preflight(server, "db", type="partition", mode="refuse")
    preflight(server, "db", type="latency", latency="10ms")  # toxics: nothing to undo wrongly
    proxy = httpx.get(f"{server.url}/proxies/db", trust_env=False).json()
    assert proxy["enabled"] is False and proxy["toxics"] == []


def test_a_missing_proxy_is_named(server: ProxyServer) -> None:
    with pytest.raises(PreflightError, match=r"no proxy 'ghost' at http://127\.0\.0\.1:"):
        preflight(server, "ghost", type="latency", latency="10ms")
