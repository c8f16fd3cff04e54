"""Preflight checks on planned faults, against a real embedded proxy: a refuse partition on a
proxy that is disabled already is refused before anything is applied (its revert would enable
it), and a proxy that does not exist is named. A fault on a host is planned on everything that
runs there, or refused, naming what it cannot or may not reach."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from processes import sleeper
from pydantic import TypeAdapter

from chaoskit.drivers.process import process_target
from chaoskit.drivers.registry import Drivers
from chaoskit.drivers.toxiproxy import proxy_target
from chaoskit.model import Experiment, Fault
from chaoskit.proxy import ProxyServer, run_in_thread
from chaoskit.runner.fronts import Fronts
from chaoskit.runner.lifecycle import FaultLifecycle
from chaoskit.runner.plan import PlannedFault, PreflightError, check_planned, plan_faults
from chaoskit.runner.system import RunningSystem
from chaoskit.safety.policy import Policy


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


@pytest.fixture
def on_two_hosts(server: ProxyServer) -> Iterator[RunningSystem]:
    """h1 runs proxy s1/web and a process (a real ``sleep``); h2 runs proxy s2/web."""
    for name in ("web", "api"):
        body = {"name": name, "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}
        httpx.post(f"{server.url}/proxies", json=body, trust_env=False).raise_for_status()
    with sleeper() as pid:
        live = RunningSystem(run_id="run-1")
        on = {"web": "h1", "api": "h2"}
        live.add_source(lambda: [
            replace(proxy_target(server.url, name), name=f"s/{name}", labels={"host": host})
            for name, host in on.items()
        ])  # fmt: skip
        live.add_source(lambda: [process_target(pid, "worker", {"host": "h1"})])
        yield live


def plan_on(live: RunningSystem, policy: Policy, *faults: dict[str, str]) -> list[PlannedFault]:
    """Plan ``faults`` (each on target ``hosts``, host h1) on the running ``live``."""
    exp = Experiment.model_validate(
        {
            "name": "hosts",
            "targets": {"hosts": {"kind": "host", "select": "h1"}},
            "load": {"url": "http://127.0.0.1:9/", "rate": "10/s"},
            "steady_state": [{"name": "errors", "of": "error_rate"}],
            "faults": [{**f, "target": "hosts"} for f in faults],
        }
    )
    lifecycle = FaultLifecycle(Drivers())
    return plan_faults(exp, policy, live, Fronts(), lifecycle)[0]


def test_a_fault_on_a_host_is_planned_on_everything_there_and_again_each_trial(
    on_two_hosts: RunningSystem,
) -> None:
    [down] = plan_on(on_two_hosts, Policy(), {"type": "host_down", "mode": "freeze"})
    hit = sorted((r.fault, r.target.name) for r in down.records)
    assert hit == [("partition", "s/web"), ("pause", "worker")], "h1's all, none of h2's"
    assert {type(down.fault_of(r)).__name__ for r in down.records} == {
        "PartitionFault", "PauseFault"
    }, "each trial plans each record again from what the fault became for its target"  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "fault", "refusal"),
    [
        ({}, {"type": "host_down"}, r"on host h1: a power_off kills .* use mode 'freeze'"),
        ({}, {"type": "partition", "mode": "disconnect"},
         r"\(partition\) reaches nothing on host h1, which runs process worker, proxy s/web"),
        ({"allowed_target_kinds": ["host", "proxy"]}, {"type": "host_down", "mode": "freeze"},
         r"would hit process worker, and process targets are not allowed here"),
        ({"protected": [{"select": "worker", "reason": "billing"}]}, {"type": "partition"},
         r"host h1 runs process 'worker' .*, which is protected by 'worker': billing"),
    ],
)  # fmt: skip
def test_a_fault_on_a_host_that_cannot_or_may_not_reach_what_runs_there_is_refused(
    on_two_hosts: RunningSystem, policy: dict[str, Any], fault: dict[str, str], refusal: str
) -> None:
    with pytest.raises(PreflightError, match=refusal):
        plan_on(on_two_hosts, Policy.model_validate(policy), fault)
