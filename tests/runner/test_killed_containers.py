"""A runner SIGKILLed at random moments of a run over several trials leaves no paused and no
stopped container: within 2 s its watchdog has unpaused the one and started the other again.

The containers are made by the test, not by the run, so they outlive it and their state after
the watchdog's revert can be read.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from killed_run import KilledRun
from waiting import wait_until

from chaoskit.stack.launcher import free_ports

pytestmark = pytest.mark.slow


@pytest.fixture
def two_backends(docker_client: Any, stack_image: str) -> Iterator[tuple[str, str, int]]:
    """Two backend containers, the first published on a loopback port; removed afterwards."""
    tag = uuid.uuid4().hex[:8]
    (port,) = free_ports(1)
    made = []
    publish = {f"frozen-{tag}": {"8080/tcp": ("127.0.0.1", port)}, f"halted-{tag}": {}}
    try:
        for name, ports in publish.items():
            argv = ["chaoskit.stack.backend", "--name", name, "--host", "0.0.0.0", "--port", "8080"]
            made.append(
                docker_client.containers.run(
                    stack_image,
                    [*argv, "--data-dir", "/data"],
                    name=name,
                    labels={"chaoskit.test": tag},
                    ports=ports,
                    tmpfs={"/data": "size=1m"},
                    detach=True,
                )
            )
        yield made[0].name, made[1].name, port
    finally:
        for container in made:
            container.remove(force=True)


@pytest.mark.parametrize("seed", [12, 17])  # trial 2 at 0.7 s, trial 3 at 1.0 s
def test_a_runner_killed_in_any_trial_leaves_no_paused_or_stopped_container(
    tmp_path: Path, docker_client: Any, two_backends: tuple[str, str, int], seed: int
) -> None:
    frozen, halted, port = two_backends
    trials = 3
    experiment = tmp_path / "killed.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-killed-containers
targets:
  frozen: {{kind: container, select: {frozen}}}
  halted: {{kind: container, select: {halted}}}
load: {{url: "http://127.0.0.1:{port}/health/live", rate: 10/s, timeout: 1s}}
steady_state: [{{name: p50, of: latency}}, {{name: errors, of: error_rate}}]
faults:
  - {{type: pause, target: frozen}}
  - {{type: crash, target: halted, action: stop}}
blast_radius: {{count: 1}}
hypothesis: {{trials: {trials}}}
phases: {{warmup: 0s, baseline: 1s, fault: 2s, recovery: 1s}}
safety: {{abort_when: [{{metric: errors, above: 50%, for: 5s}}], max_duration: 5m}}
"""
    )
    reports = tmp_path / "reports"
    draw = random.Random(seed)
    trial = draw.randint(1, trials)
    moment = draw.uniform(0.0, 2.5)  # into the fault phase or, past 2 s, the recovery phase
    runner = KilledRun(experiment, reports)
    try:
        wait_until(lambda: runner.applied() >= 2 * trial, 60, f"both faults of trial {trial}")
        time.sleep(moment)  # the random moment under test, not a synchronisation
    finally:
        runner.kill()
    killed = time.monotonic()

    def healthy() -> bool:
        states = [docker_client.containers.get(name).attrs["State"] for name in (frozen, halted)]
        return all(s["Status"] == "running" and not s["Paused"] for s in states)

    wait_until(healthy, 2, "the watchdog to unpause and restart the containers")
    assert time.monotonic() - killed < 2
    [journal] = reports.glob("*/journal.jsonl")
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert events.count("inject") >= 2 * trial
