"""Faults on whole hosts, across three hosts on one machine: network namespaces
(tests/hosts.py), each with its own ``chaoskit proxy`` holding ``web`` (its address, port
8080, before port 8000 in the host), and a second Docker engine (tests/engines.py) that is
the third host's. One run partitions h1, freezes h2 and powers h3 off; each fault is
everything chaoskit runs on that host at once, and comes back: by the runner, and by its
watchdog from outside after a SIGKILL."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from engines import SecondEngine
from hosts import NetnsHosts, need_root
from killed_run import KilledRun
from waiting import wait_until

from chaoskit.runner.journal import read_journal

pytestmark = [pytest.mark.slow, pytest.mark.long]  # two runs of 20-30 s each

BACKEND = 8000
"""The port each host's own server listens on, on the host's loopback."""


@dataclass
class Three:
    """Three hosts: their namespaces, their proxy servers' APIs, the third one's engine."""

    hosts: NetnsHosts
    apis: list[str]
    engine: SecondEngine
    tag: str

    def web(self, k: int) -> str:
        """The URL of host ``k``'s server through its proxy (``k`` from 1)."""
        return f"http://{self.hosts[k - 1].address}:8080/"

    def toxics(self, k: int) -> list[str]:
        """The toxics on host ``k``'s ``web`` proxy."""
        proxy = httpx.get(f"{self.apis[k - 1]}/proxies/web", trust_env=False).json()
        return [t["name"] for t in proxy["toxics"]]

    def container(self) -> Any:
        """The run's container on the third host's engine (None before it starts)."""
        with self.engine.client() as client:
            found = client.containers.list(all=True, filters={"name": f"h3-web-{self.tag}"})
            return found[0] if found else None


@pytest.fixture
def three(second_engine: SecondEngine) -> Iterator[Three]:
    need_root()
    with NetnsHosts(3) as hosts:
        web = {"name": "web", "upstream": f"127.0.0.1:{BACKEND}"}
        apis = [h.serve_proxies([{**web, "listen": f"{h.address}:8080"}]) for h in hosts.hosts]
        tag = uuid.uuid4().hex[:8]
        yield Three(hosts, apis, second_engine, tag)
        with second_engine.client() as client:
            for box in client.containers.list(all=True, filters={"name": f"h3-web-{tag}"}):
                box.remove(force=True)


def experiment(tmp_path: Path, three: Three, image: str, phases: str, duration: str) -> Path:
    """h1 and h2 run a server process chaoskit starts in the host; h3 runs a container
    chaoskit starts on the third host's engine; each fault hits one host (with ``duration``:
    for that long)."""
    servers = "\n".join(
        f'    - {{name: s{k}, url: "{api}", labels: {{host: h{k}, zone: z{k}}}}}'
        for k, api in enumerate(three.apis, start=1)
    )
    processes = "\n".join(
        f"    - name: h{k}-web\n"
        f"      command: [ip, netns, exec, {host.name}, {sys.executable}, -m, http.server,\n"
        f'                "{BACKEND}", --bind, 127.0.0.1]\n'
        f"      labels: {{host: h{k}, zone: z{k}}}"
        for k, host in enumerate(three.hosts.hosts[:2], start=1)
    )
    path = tmp_path / "hosts.yaml"
    path.write_text(
        f"""
version: 1
name: e2e-host-faults
system:
  toxiproxies:
{servers}
  processes:
{processes}
  engines:
    - {{name: e3, host: "{three.engine.unix}", labels: {{host: h3, zone: z3}}}}
  containers:
    - {{name: h3-web-{three.tag}, image: "{image}", command: [http.server, "{BACKEND}"],
       engine: e3}}
targets:
  one: {{kind: host, select: h1}}
  two: {{kind: host, select: "h2"}}
  three: {{kind: host, labels: {{zone: z3}}}}
load: {{url: "{three.apis[0]}/version", rate: 10/s}}
faults:
  - {{type: partition, target: one{duration}}}
  - {{type: host_down, target: two, mode: freeze{duration}}}
  - {{type: host_down, target: three{duration}}}
steady_state: [{{name: errors, of: error_rate}}]
hypothesis: {{trials: 1}}
safety: {{abort_when: [{{metric: errors, above: 50%, for: 5s}}], max_duration: 10m}}
{phases}
"""
    )
    return path


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP), by its state in /proc."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def events(run: KilledRun, name: str) -> list[dict[str, Any]]:
    journals = list(run.reports.glob("*/journal.jsonl"))
    lines = journals[0].read_text().splitlines() if journals else []
    return [e for e in map(json.loads, lines) if e["event"] == name]


def backend_pids(run: KilledRun) -> dict[str, int]:
    """The server processes the run started on h1 and h2, by name."""
    parts = [e["part"] for e in events(run, "started") if e["part"].get("kind") == "process"]
    return {p["name"]: int(p["pid"]) for p in parts}


def applied(run: KilledRun, three: Three) -> str:
    """Once the run's five records are applied: each host lost all it runs (the process and
    container ids, by name); returns when the third host's container died."""
    wait_until(lambda: run.applied() == 5, 60, "5 faults applied (1 on h1, 2 on h2 and h3)")
    hit = sorted((e["fault"]["fault"], e["fault"]["target"]["name"]) for e in events(run, "inject"))
    assert hit == sorted(
        [("partition", "s1/web"), ("partition", "s2/web"), ("pause", "h2-web"),
         ("partition", "s3/web"), ("crash", f"e3/h3-web-{three.tag}")]
    )  # fmt: skip
    assert all(three.toxics(k) for k in (1, 2, 3)), "every host's proxy hangs"
    assert not answers(three.web(1)) and not answers(three.web(2))
    pids = backend_pids(run)
    assert stopped(pids["h2-web"]) and not stopped(pids["h1-web"])
    box = three.container()
    assert box.status == "exited"
    return str(box.attrs["State"]["FinishedAt"])


@pytest.mark.usefixtures("open_policy")
def test_a_partitioned_a_frozen_and_a_powered_off_host_each_lose_all_they_run_then_come_back(
    tmp_path: Path, three: Three, stack_image: str
) -> None:
    phases = "phases: {warmup: 0s, baseline: 1s, fault: 30s, recovery: 60s}"
    path = experiment(tmp_path, three, stack_image, phases, ", duration: 10s")
    run = KilledRun(path, tmp_path / "reports")
    try:
        died = applied(run, three)
        wait_until(lambda: len(events(run, "revert")) == 5, 30, "the 5 faults taken back")
        assert all(e["ok"] for e in events(run, "revert"))
        assert not any(three.toxics(k) for k in (1, 2, 3))
        assert not stopped(backend_pids(run)["h2-web"])
        wait_until(lambda: answers(three.web(1)) and answers(three.web(2)), 10, "h1, h2 answer")
        box = three.container()
        assert box.status == "running" and box.attrs["State"]["StartedAt"] > died
    finally:
        run.kill()


@pytest.mark.usefixtures("open_policy")
def test_faults_on_three_hosts_are_taken_back_from_outside_after_the_runner_is_killed(
    tmp_path: Path, three: Three, stack_image: str
) -> None:
    phases = "phases: {warmup: 0s, baseline: 1s, fault: 5m, recovery: 1s}"
    run = KilledRun(experiment(tmp_path, three, stack_image, phases, ""), tmp_path / "reports")
    try:
        applied(run, three)
    finally:
        run.kill()
    wait_until(lambda: not any(three.toxics(k) for k in (1, 2, 3)), 20, "every proxy restored")
    [journal] = run.reports.glob("*/journal.jsonl")
    wait_until(lambda: not read_journal(journal).pending, 20, "every revert journaled")
    assert len(events(run, "revert")) == 5 and all(e["ok"] for e in events(run, "revert"))
