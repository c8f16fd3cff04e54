"""An orchestrator's healing under test: Docker Swarm, real, on a second Docker engine that
runs inside a host of its own (tests/swarms.py). A task killed is an outage the load sees
until the orchestrator has started another; a paused one is resumed, a removed one replaced,
a drained node gets its availability and its task back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.types
import pytest
from hosts import need_root
from killed_run import HELD_OPEN, KilledRun, kill_once_applied
from pydantic import TypeAdapter
from swarms import Swarm, one_node_swarm, task_kill
from waiting import wait_until

from chaoskit.drivers.base import DriverError
from chaoskit.drivers.registry import Drivers
from chaoskit.drivers.swarm import running_tasks, service_tasks, swarm_nodes
from chaoskit.model import Fault
from chaoskit.model.result import RunResult
from chaoskit.runner.lifecycle import FaultLifecycle

pytestmark = [pytest.mark.slow, pytest.mark.long]  # a task takes 10-30 s to start here


@pytest.fixture(scope="module")
def swarm(docker_client: Any, stack_image: str) -> Iterator[Swarm]:
    need_root()
    with one_node_swarm(docker_client, stack_image) as found:
        yield found


def lifecycle() -> FaultLifecycle:
    return FaultLifecycle(Drivers())


def fault(**fields: str) -> Fault:
    return TypeAdapter(Fault).validate_python({**fields, "target": "t"})


def test_a_services_tasks_and_the_nodes_are_targets_named_by_engine_with_its_labels(
    swarm: Swarm,
) -> None:
    [task] = [t for t in service_tasks([swarm.named()]) if swarm.name in t.name]
    assert task.name == f"sw/{swarm.name}.1" and task.kind == "service"
    assert task.labels["tier"] == "web" and task.labels["host"] == "h1"
    assert task.ref["id"] == swarm.tasks()[0]["Status"]["ContainerStatus"]["ContainerID"]
    [node] = swarm_nodes([swarm.named()])
    assert node.kind == "node" and node.name.startswith("sw/") and node.labels["zone"] == "a"


def test_a_paused_task_is_resumed_and_a_removed_one_replaced_by_the_orchestrator(
    swarm: Swarm,
) -> None:
    async def apply_and_revert(kind: str) -> str:
        [task] = [t for t in service_tasks([swarm.named()]) if swarm.name in t.name]
        faults = lifecycle()
        try:
            record = faults.plan(fault(type=kind), task)
            await faults.check([record])
            await faults.inject(record)
            with swarm.engine.client() as client:
                gone = kind == "remove"
                status = None if gone else client.containers.get(task.ref["id"]).status
                assert status == ("paused" if kind == "pause" else None)
                if gone:
                    assert not client.containers.list(all=True, filters={"id": task.ref["id"]})
            await faults.revert()
        finally:
            await faults.aclose()
        return str(task.ref["id"])

    paused = asyncio.run(apply_and_revert("pause"))
    assert swarm.tasks()[0]["Status"]["ContainerStatus"]["ContainerID"] == paused
    assert swarm.answers()
    removed = asyncio.run(apply_and_revert("remove"))
    wait_until(swarm.healthy, 120, "the orchestrator's new task answering")
    assert swarm.tasks()[0]["Status"]["ContainerStatus"]["ContainerID"] != removed


def test_a_drained_node_gets_its_availability_back_and_its_task_again(swarm: Swarm) -> None:
    [node] = swarm_nodes([swarm.named()])
    faults = lifecycle()

    def availability() -> str:
        with swarm.engine.client() as client:
            return str(client.nodes.get(node.ref["node"]).attrs["Spec"]["Availability"])

    async def drain() -> None:
        try:
            record = faults.plan(fault(type="drain"), node)
            assert record.undo == {"availability": "active"}
            await faults.inject(record)
        finally:
            await faults.aclose()

    async def revert() -> None:
        try:
            await faults.revert()
        finally:
            await faults.aclose()

    asyncio.run(drain())
    assert availability() == "drain"
    wait_until(lambda: not swarm.tasks(), 60, "the task moved off the drained (only) node")
    asyncio.run(revert())
    assert availability() == "active"
    wait_until(swarm.healthy, 120, "the task scheduled again on the node")


@pytest.mark.usefixtures("open_policy")
def test_time_to_recovery_is_the_orchestrator_restoring_the_replicas_and_the_steady_state(
    tmp_path: Path, swarm: Swarm
) -> None:
    """A run brings its own service up on the swarm (all replicas running before the load),
    kills its task in each of two trials (the second finds the task the orchestrator started
    after the first), measures the orchestrator bringing it back, and removes the service."""
    service = f"api-{uuid.uuid4().hex[:8]}"
    experiment = tmp_path / "swarm.yaml"
    experiment.write_text(task_kill(swarm, trials=2, service=service))
    run = KilledRun(experiment, tmp_path / "reports")
    deadline = time.monotonic() + 600
    while run.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)  # the run's own length: it ends when its phases do
    run.kill()
    [found] = (tmp_path / "reports").glob("*/result.json")
    result = RunResult.model_validate(json.loads(found.read_text()))
    injected = [e for e in result.faults if e.event == "inject"]
    assert [e.fault for e in injected] == ["crash", "crash"], result.error
    assert result.verdict is not None and not result.verdict.recovery_failures, result.verdict
    recovery = result.verdict.recovery
    for name in ("errors", "missing"):
        assert [t["recovered"] for t in recovery[name].trials] == [True, True], recovery[name]
    [journal] = (tmp_path / "reports").glob("*/journal.jsonl")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    [started] = [e["part"] for e in events if e["event"] == "started"]
    assert started["kind"] == "service" and started["name"] == service
    assert any(e["event"] == "stopped" and e["key"] == started["key"] for e in events)
    with swarm.engine.client() as client:
        assert not client.services.list(filters={"name": service}), "removed after the run"


@pytest.mark.usefixtures("open_policy")
def test_a_service_that_cannot_run_refuses_the_run_saying_what_its_tasks_said(
    tmp_path: Path, swarm: Swarm
) -> None:
    experiment = tmp_path / "swarm.yaml"
    service = f"ghost-{uuid.uuid4().hex[:8]}"
    text = task_kill(swarm, trials=1, service=service).replace(f'"{swarm.image}"', "nothing:here")
    restart = "restart: {condition: any, delay: 1s}"
    experiment.write_text(text.replace(restart, f"{restart}\n      ready_timeout: 5s"))
    argv = [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports",
            str(tmp_path / "reports")]  # fmt: skip
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 6, done.stderr
    assert "not all of its 1 replicas ran within 5s" in done.stderr
    assert "system.services[0].ready_timeout" in done.stderr
    with swarm.engine.client() as client:
        assert not client.services.list(filters={"name": service}), "removed after the refusal"


def test_a_task_its_orchestrator_would_not_restart_is_not_killed(swarm: Swarm) -> None:
    """A service that restarts on 'none' would stay short after the run: a kill or a removal
    of its task is refused before anything is touched; a pause (resumed after) is not."""
    name = f"once-{uuid.uuid4().hex[:8]}"
    with swarm.engine.client() as client:
        client.services.create(
            swarm.image, args=["http.server", "8000"], name=name,
            restart_policy=docker.types.RestartPolicy(condition="none"),
        )  # fmt: skip
        try:
            wait_until(lambda: len(running_tasks(client.services.get(name))) == 1, 120,
                       "the task running")  # fmt: skip
            [task] = [t for t in service_tasks([swarm.named()]) if name in t.name]
            faults = lifecycle()
            for kind in ("crash", "remove"):
                with pytest.raises(DriverError, match="restarts its tasks on 'none'"):
                    faults.plan(fault(type=kind), task)
            assert faults.plan(fault(type="pause"), task).undo == {"unpause": True}
            assert client.containers.get(task.ref["id"]).status == "running"
        finally:
            client.services.get(name).remove()


@pytest.mark.usefixtures("open_policy")
def test_a_drain_left_by_a_killed_runner_is_taken_back_by_its_watchdog(
    tmp_path: Path, swarm: Swarm
) -> None:
    experiment = tmp_path / "drain.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-drain-killed
system:
  engines: [{{name: sw, host: "{swarm.engine.unix}", labels: {{host: h1}}}}]
targets:
  nodes: {{kind: node, select: "*"}}
load: {{url: "{swarm.url}", rate: 5/s}}
faults: [{{type: drain, target: nodes}}]
"""
        + HELD_OPEN
    )
    [node] = swarm_nodes([swarm.named()])

    def availability() -> str:
        with swarm.engine.client() as client:
            return str(client.nodes.get(node.ref["node"]).attrs["Spec"]["Availability"])

    kill_once_applied(experiment, tmp_path / "reports", 1)
    wait_until(lambda: availability() == "active", 20, "the watchdog making the node active")
    wait_until(swarm.healthy, 120, "the task scheduled again on the node")
