"""A run with many faults at once (30 proxies, 10 processes, 5 containers), SIGKILLed once
every fault is applied: its watchdog takes every one back, and the journal records each revert.

The targets are made by the test, not by the run, so they outlive it and what the watchdog did
can be read from them: the proxy's toxics, the processes' state, the containers' pause.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from containers import sleeping
from killed_run import HELD_OPEN, kill_once_applied
from processes import sleeper, state_of
from proxy_servers import proxy_server
from waiting import wait_until

from chaoskit.runner.journal import read_journal

pytestmark = pytest.mark.slow
PROXIES, PROCESSES, CONTAINERS = 30, 10, 5
FAULTS = PROXIES + PROCESSES + CONTAINERS


@pytest.fixture
def proxy_api() -> Iterator[str]:
    """``chaoskit proxy`` with proxies many-0 … many-29 (to a port nothing listens on)."""
    with proxy_server([f"many-{i}" for i in range(PROXIES)]) as api:
        yield api


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Running ``sleep`` processes; resumed and killed afterwards."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(sleeper()) for _ in range(PROCESSES)]


@pytest.fixture
def boxes(docker_client: Any, stack_image: str) -> Iterator[str]:
    """Containers of the stack image running ``sleep``, with a label of their own (returned);
    removed afterwards."""
    with sleeping(docker_client, stack_image, CONTAINERS) as (tag, _):
        yield tag


@dataclass
class Many:
    """The targets, and how many of their faults are in place, as they themselves say."""

    api: str
    pids: list[int]
    tag: str
    docker: Any

    def applied(self) -> int:
        proxies = httpx.get(f"{self.api}/proxies", trust_env=False).json()
        toxics = sum(bool(proxy["toxics"]) for proxy in proxies.values())
        stopped = sum(state_of(pid) == "T" for pid in self.pids)
        found = {"label": f"chaoskit.test={self.tag}", "status": "paused"}
        return toxics + stopped + len(self.docker.containers.list(filters=found))


@pytest.fixture
def many(docker_client: Any, proxy_api: str, pids: list[int], boxes: str) -> Many:
    return Many(proxy_api, pids, boxes, docker_client)


def test_a_killed_run_with_many_faults_has_every_one_reverted_and_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, many: Many
) -> None:
    policy = tmp_path / "policy.yaml"  # the repository's policy hits at most 5 targets at once
    policy.write_text("version: 1\n")
    monkeypatch.setenv("CHAOSKIT_POLICY", str(policy))
    experiment = tmp_path / "many.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-killed-many
system: {{toxiproxy: "{many.api}"}}
targets:
  proxies: {{kind: proxy, select: "many-*"}}
  sleepers: {{kind: process, pids: {many.pids}}}
  boxes: {{kind: container, labels: {{chaoskit.test: "{many.tag}"}}}}
load: {{url: "{many.api}/version", rate: 10/s}}
faults:
  - {{type: latency, target: proxies, latency: 1ms}}
  - {{type: pause, target: sleepers}}
  - {{type: pause, target: boxes}}
"""
        + HELD_OPEN
    )
    reports = tmp_path / "reports"
    kill_once_applied(experiment, reports, FAULTS)

    wait_until(lambda: many.applied() == 0, 10, "the watchdog's reverts")
    [journal] = reports.glob("*/journal.jsonl")
    wait_until(lambda: not read_journal(journal).pending, 10, "every revert journaled")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    injected = [e["fault"]["id"] for e in events if e["event"] == "inject"]
    reverted = [e["id"] for e in events if e["event"] == "revert" and e["ok"]]
    assert len(injected) == FAULTS and sorted(reverted) == sorted(injected)
    log = (journal.parent / "watchdog.log").read_text()
    assert f"runner gone; reverting {FAULTS} fault(s)" in log
