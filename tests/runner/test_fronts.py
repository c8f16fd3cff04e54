"""The runner places a proxy in front of each process a network fault may hit, on the port its
target's ``listen`` names, on a real embedded proxy server — or refuses, saying how to fix it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chaoskit.drivers.base import Target
from chaoskit.model import Experiment
from chaoskit.proxy import ProxyServer, run_in_thread
from chaoskit.runner.fronts import FrontError, fronted_keys, place_fronts
from chaoskit.runner.system import RunningSystem, free_ports

WEBS = [Target("process", "web-1", {}, {"pid": 2, "start": 0}),
        Target("process", "web-2", {}, {"pid": 3, "start": 0})]  # fmt: skip


@pytest.fixture
def server() -> Iterator[ProxyServer]:
    with run_in_thread() as running:
        yield running


def experiment(listen: Any, port: Any = 8080) -> Experiment:
    return Experiment.model_validate(
        {
            "name": "fronts",
            "system": {"ports": ["front1", "front2", "web2"]},
            "targets": {
                "webs": {"kind": "process", "select": "web-*", "port": port, "listen": listen},
                "others": {"kind": "process", "select": "web-*"},
            },
            "load": {"url": "http://127.0.0.1:${ports.front1}/", "rate": "10/s"},
            "steady_state": [{"name": "errors", "of": "error_rate"}],
            "faults": [
                {"type": "latency", "target": "webs", "latency": "100ms"},
                {"type": "pause", "target": "others"},
            ],
        }
    )


def running(server: ProxyServer) -> RunningSystem:
    front1, front2, web2 = free_ports(3)
    live = RunningSystem(
        ports={"front1": front1, "front2": front2, "web2": web2}, front_url=server.url
    )
    live.add_source(lambda: WEBS)
    return live


def test_each_process_gets_a_proxy_on_its_listen_port(server: ProxyServer) -> None:
    live = running(server)
    exp = experiment({"web-1": "front1", "web-2": "front2"})
    assert fronted_keys(exp) == ["webs"]  # the target without 'listen' gets no proxy
    fronts = asyncio.run(place_fronts(exp, live))
    placed = fronts.to_json()["webs"]
    assert placed["web-1"]["listen"] == f"127.0.0.1:{live.ports['front1']}"
    assert placed["web-2"]["listen"] == f"127.0.0.1:{live.ports['front2']}"
    proxies = httpx.get(f"{server.url}/proxies", trust_env=False).json()
    assert {p["listen"]: p["upstream"] for p in proxies.values()} == {
        placed["web-1"]["listen"]: "127.0.0.1:8080",
        placed["web-2"]["listen"]: "127.0.0.1:8080",
    }
    front = fronts.of("webs", WEBS[0])
    assert front is not None and front.kind == "proxy" and front.name == "web-1"


@pytest.mark.parametrize(
    ("listen", "match"),
    [
        ("front1", r"selects 2 processes \(web-1, web-2\) but 'listen' names one port"),
        ({"web-1": "front1"}, "selects process 'web-2', which 'listen' gives no port"),
    ],
)
def test_listen_ports_that_do_not_fit_the_processes_are_refused(
    server: ProxyServer, listen: Any, match: str
) -> None:
    with pytest.raises(FrontError, match=match):
        asyncio.run(place_fronts(experiment(listen), running(server)))


def test_processes_of_one_target_each_relay_to_their_own_port(server: ProxyServer) -> None:
    """Processes on loopback cannot share a port: ``port`` maps each to its own."""
    live = running(server)
    exp = experiment({"web-1": "front1", "web-2": "front2"}, port={"web-1": 8080, "web-2": "web2"})
    placed = asyncio.run(place_fronts(exp, live)).to_json()["webs"]
    proxies = httpx.get(f"{server.url}/proxies", trust_env=False).json()
    assert {p["listen"]: p["upstream"] for p in proxies.values()} == {
        placed["web-1"]["listen"]: "127.0.0.1:8080",
        placed["web-2"]["listen"]: f"127.0.0.1:{live.ports['web2']}",
    }
    with pytest.raises(FrontError, match="process 'web-2', which 'port' gives no port"):
        asyncio.run(
            place_fronts(
                experiment({"web-1": "front1", "web-2": "front2"}, port={"web-1": 8080}),
                running(server),
            )
        )
