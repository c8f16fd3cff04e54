"""Several Docker engines and Toxiproxy servers in one experiment, all real: the machine's own
engine, a second ``dockerd`` reached over TCP with mutual TLS (tests/engines.py), and two
``chaoskit proxy`` servers. Targets are named by engine or server and carry its labels; each
record names its engine, so the watchdog and ``chaoskit rollback`` revert on every one; an
engine that does not answer at revert time is retried, then left in the journal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest
from containers import sleeping
from engines import SecondEngine
from killed_run import HELD_OPEN, kill_once_applied
from proxy_servers import proxy_server
from pydantic import TypeAdapter
from waiting import wait_until

from chaoskit.drivers.engines import Engine
from chaoskit.drivers.registry import Drivers
from chaoskit.model import Fault
from chaoskit.model.system import ContainerTarget
from chaoskit.runner.journal import Journal, read_journal
from chaoskit.runner.lifecycle import FaultLifecycle
from chaoskit.runner.rollback import revert_all, rollback
from chaoskit.runner.system import parts as parts_module
from chaoskit.runner.system.parts import stop_part
from chaoskit.runner.targets import engine_containers, select
from chaoskit.stack.launcher import free_ports

pytestmark = pytest.mark.slow
LOCAL_SOCKET = Path("/var/run/docker.sock")


def engines(second: SecondEngine) -> tuple[Engine, Engine]:
    """The machine's engine as ``one`` (zone a), the second over TCP and TLS as ``two``."""
    assert second.tls is not None
    tls = {"ca": second.tls.ca, "cert": second.tls.cert, "key": second.tls.key, "verify": True}
    return (
        Engine("one", f"unix://{LOCAL_SOCKET}", None, {"host": "h1", "zone": "a"}),
        Engine("two", second.tcp, tls, {"host": "h2", "zone": "b"}),
    )


@pytest.fixture
def boxes(docker_client: Any, second_engine: SecondEngine, stack_image: str) -> Iterator[str]:
    """Two sleeping containers on each engine, all called ``many-TAG-*`` (TAG returned)."""
    if not LOCAL_SOCKET.is_socket():
        pytest.skip(f"the machine's engine is not at {LOCAL_SOCKET}")
    tag = uuid.uuid4().hex[:8]
    with (
        second_engine.client() as other,
        sleeping(docker_client, stack_image, 2, tag),
        sleeping(other, stack_image, 2, tag),
    ):
        yield tag


def paused(client: Any, tag: str) -> int:
    found = {"label": f"chaoskit.test={tag}", "status": "paused"}
    return len(client.containers.list(filters=found))


def test_containers_on_named_engines_are_named_by_engine_carry_its_labels_and_select_by_it(
    second_engine: SecondEngine, boxes: str
) -> None:
    one, two = engines(second_engine)
    found = [t for t in engine_containers([one, two]) if f"many-{boxes}-" in t.name]
    assert sorted(t.name for t in found) == [
        f"{engine}/many-{boxes}-{i}" for engine in ("one", "two") for i in (0, 1)
    ]
    on_two = [t for t in found if t.name.startswith("two/")]
    assert all(t.labels["zone"] == "b" and t.labels["chaoskit.test"] == boxes for t in on_two)
    assert all(t.ref["engine"] == two.to_json() for t in on_two)

    def chosen(**spec: object) -> list[str]:
        target = ContainerTarget.model_validate({"kind": "container", **spec})
        return [t.name for t in select("boxes", target, found)]

    bare = f"many-{boxes}-*"
    assert len(chosen(select=bare)) == 4  # a pattern matches the name without its engine
    two_names = sorted(t.name for t in on_two)
    assert chosen(select=bare, engine="two") == two_names
    assert chosen(select=bare, labels={"zone": "b"}) == two_names
    assert chosen(select=f"one/many-{boxes}-0") == [f"one/many-{boxes}-0"]


@pytest.mark.usefixtures("open_policy")
def test_a_killed_run_over_two_engines_and_two_proxy_servers_is_reverted_on_every_one(
    tmp_path: Path, docker_client: Any, second_engine: SecondEngine, boxes: str
) -> None:
    one, two = engines(second_engine)
    tls = two.tls or {}
    with proxy_server(["edge-0", "edge-1"]) as east, proxy_server(["edge-0"]) as west:
        experiment = tmp_path / "engines.yaml"
        experiment.write_text(
            f"""
version: 1
name: e2e-engines
system:
  engines:
    - {{name: one, host: "{one.host}", labels: {{host: h1, zone: a}}}}
    - name: two
      host: "{two.host}"
      tls: {{ca: "{tls["ca"]}", cert: "{tls["cert"]}", key: "{tls["key"]}"}}
      labels: {{host: h2, zone: b}}
  toxiproxies:
    - {{name: east, url: "{east}", labels: {{zone: a}}}}
    - {{name: west, url: "{west}", labels: {{zone: b}}}}
targets:
  boxes: {{kind: container, select: "many-{boxes}-*"}}
  edges: {{kind: proxy, select: "edge-*"}}
load: {{url: "{east}/version", rate: 10/s}}
faults:
  - {{type: latency, target: edges, latency: 1ms}}
  - {{type: pause, target: boxes}}
"""
            + HELD_OPEN
        )
        reports = tmp_path / "reports"
        kill_once_applied(experiment, reports, 7)  # 4 boxes, 3 edges
        with second_engine.client() as other:

            def applied() -> int:
                toxics = sum(
                    bool(proxy["toxics"])
                    for api in (east, west)
                    for proxy in httpx.get(f"{api}/proxies", trust_env=False).json().values()
                )
                return toxics + paused(docker_client, boxes) + paused(other, boxes)

            wait_until(lambda: applied() == 0, 10, "the watchdog's reverts on every backend")
    [journal] = reports.glob("*/journal.jsonl")
    wait_until(lambda: not read_journal(journal).pending, 10, "every revert journaled")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    injected = [e["fault"] for e in events if e["event"] == "inject"]
    assert sorted(f["target"]["name"] for f in injected) == sorted(
        [f"{e}/many-{boxes}-{i}" for e in ("one", "two") for i in (0, 1)]
        + ["east/edge-0", "east/edge-1", "west/edge-0"]
    )
    engines_named = {
        f["target"]["ref"]["engine"]["host"] for f in injected if f["driver"] == "docker"
    }
    assert engines_named == {one.host, two.host}
    servers_named = {f["params"]["url"] for f in injected if f["driver"] == "toxiproxy"}
    assert servers_named == {east, west}


def test_an_engine_that_stops_answering_is_retried_then_left_to_a_later_rollback(
    tmp_path: Path, second_engine: SecondEngine, boxes: str
) -> None:
    """The second engine's daemon stops after the fault (its containers live on, paused:
    ``--live-restore``); the revert is tried for a while, fails loudly, and stays in the
    journal, from which ``chaoskit rollback`` takes it back once the engine answers again."""
    _, two = engines(second_engine)
    [box] = [t for t in engine_containers([two]) if t.name == f"two/many-{boxes}-0"]
    journal_path = tmp_path / "journal.jsonl"

    async def inject_then_lose_the_engine() -> tuple[list[Any], float]:
        journal = Journal.create(journal_path, "engine-loss")
        faults = FaultLifecycle(Drivers(), journal)
        pause = TypeAdapter(Fault).validate_python({"type": "pause", "target": "boxes"})
        record = faults.plan(pause, box)
        await faults.inject(record)
        second_engine.stop_daemon()
        began = time.monotonic()
        outcomes = await revert_all([record], faults.drivers, journal, patience=2.0)
        took = time.monotonic() - began
        await faults.aclose()
        journal.release()
        return outcomes, took

    try:
        outcomes, took = asyncio.run(inject_then_lose_the_engine())
    finally:
        second_engine.start_daemon()
    [outcome] = outcomes
    assert not outcome.ok and outcome.error is not None
    assert "Docker engine two (tcp://127.0.0.1:" in outcome.error
    assert "does not answer" in outcome.error and "left in the journal" in outcome.error
    tries = int(outcome.error.split("tried ")[1].split(" ")[0])
    assert tries >= 3 and 1.0 <= took < 2.0 + 10  # no attempt starts after the patience
    [pending] = read_journal(journal_path).pending
    assert pending.target.name == f"two/many-{boxes}-0"
    with second_engine.client() as other:
        assert paused(other, boxes) == 1  # still paused: nothing took it back
        done = asyncio.run(rollback(journal_path))  # as `chaoskit rollback` and the watchdog do
        assert done.ok, done.lines()
        assert done.lines() == [f"pause on two/many-{boxes}-0: reverted"]
        assert paused(other, boxes) == 0
    assert not read_journal(journal_path).pending


@pytest.mark.usefixtures("open_policy")
def test_a_container_the_run_started_on_a_named_engine_is_removed_there_when_the_runner_dies(
    tmp_path: Path, second_engine: SecondEngine, stack_image: str
) -> None:
    """The journal names the engine a part was started on; the watchdog, after the runner's
    SIGKILL, unpauses the container and removes it from that engine."""
    _, two = engines(second_engine)
    tls = two.tls or {}
    name = f"part-{uuid.uuid4().hex[:8]}"
    with proxy_server([]) as api:
        experiment = tmp_path / "part.yaml"
        experiment.write_text(
            f"""
version: 1
name: e2e-engine-part
system:
  engines:
    - name: two
      host: "{two.host}"
      tls: {{ca: "{tls["ca"]}", cert: "{tls["cert"]}", key: "{tls["key"]}"}}
  containers:
    - name: {name}
      image: {stack_image}
      command: [chaoskit.stack.backend, --name, {name}, --port, "8080", --data-dir, /tmp]
      engine: two
targets:
  box: {{kind: container, select: {name}}}
load: {{url: "{api}/version", rate: 10/s}}
faults: [{{type: pause, target: box}}]
"""
            + HELD_OPEN
        )
        reports = tmp_path / "reports"
        kill_once_applied(experiment, reports, 1)
    with second_engine.client() as other:

        def gone() -> bool:
            return not other.containers.list(all=True, filters={"name": name})

        wait_until(gone, 30, f"the watchdog to remove {name} from engine two")
    [journal] = reports.glob("*/journal.jsonl")
    wait_until(lambda: not read_journal(journal).running, 10, "the removal journaled")
    [fault] = [json.loads(line)["fault"] for line in journal.read_text().splitlines()
               if json.loads(line)["event"] == "inject"]  # fmt: skip
    assert fault["target"]["name"] == f"two/{name}"


@pytest.mark.usefixtures("open_policy")
def test_a_run_whose_engine_does_not_answer_is_refused_before_anything(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    experiment = tmp_path / "down.yaml"
    experiment.write_text(
        f"""
version: 1
name: engine-down
system:
  engines: [{{name: gone, host: "tcp://127.0.0.1:{port}"}}]
targets:
  boxes: {{kind: container, select: "web-*"}}
load: {{url: "http://127.0.0.1:{port}/", rate: 10/s}}
steady_state: [{{name: errors, of: error_rate}}]
faults: [{{type: pause, target: boxes}}]
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    engine = f"Docker engine gone (tcp://127.0.0.1:{port})"
    assert f"refused, nothing was touched: container targets: {engine} does not answer" in (
        done.stderr
    )


def test_a_container_whose_removal_is_under_way_counts_as_stopped(
    second_engine: SecondEngine, stack_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner killed while it removes its container leaves its watchdog to meet the engine's
    'removal already in progress' (409): the part is stopped once that removal ends, not a
    failure for ``chaoskit rollback`` to chase. (On the second engine: its storage driver,
    vfs, makes a removal last long enough to meet.)"""
    met: list[str] = []
    waited = parts_module._removed_by_other

    def spied(client: Any, container: str, said: str) -> str | None:  # a spy: calls through
        met.append(said)
        return waited(client, container, said)

    monkeypatch.setattr(parts_module, "_removed_by_other", spied)
    with second_engine.client() as docker_client:
        removed_while_removing(docker_client, second_engine.unix, stack_image)
    assert met and "already in progress" in met[0], "the 409 was met, and waited out"


def removed_while_removing(docker_client: Any, engine: str, stack_image: str) -> None:
    box = docker_client.containers.run(
        stack_image, entrypoint=["sleep", "infinity"], detach=True, network_mode="none"
    )
    seen: list[str] = []

    def removing() -> bool:
        try:
            seen.append(docker_client.api.inspect_container(box.id)["State"]["Status"])
        except docker.errors.NotFound:
            seen.append("gone")
        return seen[-1] in ("removing", "gone")

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(box.remove, force=True)  # the dying runner's own removal
        wait_until(removing, 10, "the first removal under way", step=0.001)
        assert seen[-1] == "removing", f"the removal ended before it could be met: {seen}"
        part = {"kind": "container", "id": box.id, "name": "busy", "engine": {"name": "two",
                "host": engine, "tls": None}}  # fmt: skip
        assert stop_part(part) is None
        first.result()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(box.id)
