"""An experiment across three hosts on one machine (network namespaces, tests/hosts.py), each
running its own ``chaoskit proxy`` server: the draw is spread one target per host, and after
the runner's SIGKILL its watchdog, outside every host, takes each fault back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hosts import NetnsHosts, need_root
from killed_run import HELD_OPEN, kill_once_applied
from waiting import wait_until

from chaoskit.runner.journal import read_journal

pytestmark = pytest.mark.slow


@pytest.fixture
def apis() -> Iterator[list[str]]:
    """Three hosts, each with a ``chaoskit proxy`` on its own address holding ``edge-0`` and
    ``edge-1``: their API URLs."""
    need_root()
    with NetnsHosts(3) as hosts:
        edges = [{"name": f"edge-{i}", "upstream": "127.0.0.1:9"} for i in range(2)]
        yield [
            host.serve_proxies([{**edge, "listen": f"{host.address}:0"} for edge in edges])
            for host in hosts.hosts
        ]


def toxics(apis: list[str]) -> int:
    listed = [httpx.get(f"{api}/proxies", trust_env=False).json() for api in apis]
    return sum(bool(proxy["toxics"]) for proxies in listed for proxy in proxies.values())


@pytest.mark.usefixtures("open_policy")
def test_a_killed_run_spread_over_three_hosts_is_reverted_on_each_from_outside(
    tmp_path: Path, apis: list[str]
) -> None:
    servers = "\n".join(
        f'    - {{name: h{k}, url: "{api}", labels: {{host: h{k}, zone: z{k}}}}}'
        for k, api in enumerate(apis, start=1)
    )
    experiment = tmp_path / "hosts.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-three-hosts
system:
  toxiproxies:
{servers}
targets:
  edges: {{kind: proxy, select: "edge-*"}}
load: {{url: "{apis[0]}/version", rate: 10/s}}
faults: [{{type: latency, target: edges, latency: 1ms}}]
blast_radius: {{count: 3, spread: host, seed: 5}}
"""
        + HELD_OPEN
    )
    reports = tmp_path / "reports"
    kill_once_applied(experiment, reports, 3)
    wait_until(lambda: toxics(apis) == 0, 10, "the watchdog's reverts on all three hosts")
    [journal] = reports.glob("*/journal.jsonl")
    wait_until(lambda: not read_journal(journal).pending, 10, "every revert journaled")
    injected = [json.loads(line)["fault"] for line in journal.read_text().splitlines()
                if json.loads(line)["event"] == "inject"]  # fmt: skip
    assert sorted(f["params"]["url"] for f in injected) == sorted(apis)
    assert sorted(f["target"]["name"].split("/")[0] for f in injected) == ["h1", "h2", "h3"]
