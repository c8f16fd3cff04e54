"""Docker Swarm: an orchestrator's healing under test.

A service's running tasks are ``service`` targets (``web.2``: the service and the task's
slot) and the swarm's nodes are ``node`` targets, both listed through the engines that manage
the swarm. The faults are the ones an orchestrator must heal: a task's container killed,
paused or removed, a node drained. Taking a kill or a removal back is the orchestrator's work,
which the run measures, so their records undo nothing; a pause is resumed, a drained node gets
its earlier availability back.

A task's container is reached through the engine of the node it runs on: an engine under
``system.engines`` that is that node (on one machine, the environment's engine is the node
it runs). A task on a node no engine reaches is not offered as a target.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import docker.errors
import requests

from ..model import Fault
from ..model.faults import CrashFault, DrainFault, PauseFault, RemoveFault
from .base import AppliedFault, DriverError, Target, TargetGone
from .docker import DockerDriver, crash, unreachable
from .engines import ENVIRONMENT, Engine, engine_of

__all__ = ["SwarmDriver", "running_tasks", "service_tasks", "swarm_nodes"]


def _listed(engines: Sequence[Engine]) -> list[tuple[Engine, Any, dict[str, Any]]]:
    """Each engine with a client and its ``docker info`` Swarm section (the caller closes the
    clients); :class:`DriverError` for an engine that does not answer."""
    found = []
    for engine in engines or [ENVIRONMENT]:
        client = engine.client()
        try:
            found.append((engine, client, client.info().get("Swarm") or {}))
        except (docker.errors.DockerException, requests.RequestException) as error:
            client.close()
            raise DriverError(f"{engine.described()} does not answer: {error}") from None
    return found


def _managers(listed: list[tuple[Engine, Any, dict[str, Any]]]) -> list[tuple[Engine, Any]]:
    """One manager per swarm among the engines (by cluster id)."""
    seen: set[str] = set()
    found = []
    for engine, client, swarm in listed:
        cluster = (swarm.get("Cluster") or {}).get("ID")
        if swarm.get("ControlAvailable") and cluster and cluster not in seen:
            seen.add(cluster)
            found.append((engine, client))
    return found


def _named(engine: Engine, name: str, named: bool) -> str:
    return f"{engine.name}/{name}" if named else name


def running_tasks(service: Any) -> list[dict[str, Any]]:
    """The tasks of ``service`` that run now (desired and actual state ``running``)."""
    tasks = service.tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t.get("Status", {}).get("State") == "running"]


def service_tasks(engines: Sequence[Engine] = ()) -> list[Target]:
    """The running tasks of every service of the swarms ``engines`` manage (none: the
    environment's engine), as ``service`` targets called ``SERVICE.SLOT`` (a global service's:
    ``SERVICE.NODE``), on named engines ``ENGINE/SERVICE.SLOT`` with the engine's name and
    labels taken from the engine of the node the task runs on. Raises :class:`DriverError`
    when an engine does not answer."""
    listed = _listed(engines)
    try:
        by_node = {swarm.get("NodeID"): engine for engine, _, swarm in listed}
        found: dict[str, Target] = {}
        for _, client in _managers(listed):
            hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
            for service in client.services.list():
                labels = dict(service.attrs["Spec"].get("Labels") or {})
                for task in running_tasks(service):
                    node = by_node.get(task.get("NodeID"))
                    container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
                    if node is None or not container:
                        continue  # on a node no engine of the experiment reaches
                    slot = task.get("Slot") or hostnames.get(task["NodeID"], task["NodeID"])
                    name = _named(node, f"{service.name}.{slot}", bool(engines))
                    ref = {"id": container, "task": task["ID"], "service": service.name}
                    if engines:
                        ref["engine"] = node.to_json()
                    where = {"node": hostnames.get(task["NodeID"], task["NodeID"])}
                    found[task["ID"]] = Target(
                        "service", name, {**labels, **where, **node.labels}, ref
                    )
        return sorted(found.values(), key=lambda t: t.name)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DriverError(f"cannot list the swarm's services: {error}") from None
    finally:
        for _, client, _ in listed:
            client.close()


def swarm_nodes(engines: Sequence[Engine] = ()) -> list[Target]:
    """The nodes of the swarms ``engines`` manage, as ``node`` targets called by hostname (on
    named engines ``ENGINE/HOSTNAME``, by the engine that is the node if one is, else the
    manager), with the node's labels and that engine's. Each record reaches the node through
    a manager."""
    listed = _listed(engines)
    try:
        by_node = {swarm.get("NodeID"): engine for engine, _, swarm in listed}
        found = []
        for manager, client in _managers(listed):
            for node in client.nodes.list():
                own = by_node.get(node.id, manager)
                hostname = node.attrs["Description"]["Hostname"]
                labels = {**(node.attrs["Spec"].get("Labels") or {}), **own.labels}
                ref: dict[str, Any] = {"node": node.id}
                if engines:
                    ref["engine"] = manager.to_json()
                found.append(Target("node", _named(own, hostname, bool(engines)), labels, ref))
        return sorted(found, key=lambda t: t.name)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DriverError(f"cannot list the swarm's nodes: {error}") from None
    finally:
        for _, client, _ in listed:
            client.close()


class SwarmDriver(DockerDriver):
    """Kill, pause or remove a service task's container; drain a node (and make it available
    again as it was)."""

    name = "swarm"

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on a task or node, with what revert will need; reads the
        engine, touches nothing."""
        if target.kind == "node":
            if not isinstance(fault, DrainFault):
                raise DriverError(f"the swarm driver cannot apply a {fault.type} fault to a node")
            node = self._node(target)
            if node is None:
                raise TargetGone(f"node {target.name} has left the swarm")
            was = node.attrs["Spec"].get("Availability", "active")
            if was == "drain":
                raise DriverError(
                    f"node {target.name} is drained already: a drain would change nothing, and "
                    "taking it back would leave it drained; make it active first or choose "
                    "another node"
                )
            return AppliedFault(self.name, "drain", target, {"availability": "drain"},
                                {"availability": was})  # fmt: skip
        if target.kind != "service":
            raise DriverError(f"the swarm driver cannot act on a {target.kind} target")
        if self._container(target) is None:
            raise TargetGone(f"task {target.name} has no container any more")
        if isinstance(fault, CrashFault):
            if fault.action == "restart":
                raise DriverError(
                    "a task is restarted by its orchestrator, not by chaoskit: use action "
                    "'kill' or 'stop'"
                )
            params = {"action": fault.action, "signal": fault.signal}
            return AppliedFault(self.name, "crash", target, params, {})
        if isinstance(fault, PauseFault):
            return AppliedFault(self.name, "pause", target, {}, {"unpause": True})
        if isinstance(fault, RemoveFault):
            return AppliedFault(self.name, "remove", target, {}, {})
        raise DriverError(f"the swarm driver cannot apply a {fault.type} fault to a task")

    def _node(self, target: Target) -> Any | None:
        try:
            return self.client(engine_of(target.ref)).nodes.get(target.ref["node"])
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as error:
            raise DriverError(f"node {target.name}: {error.explanation}") from None
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise unreachable(target, error) from None

    async def check(self, record: AppliedFault) -> None:
        """The engine answers and the task's container (or the node) is still there."""
        if record.target.kind == "node":
            if await asyncio.to_thread(self._node, record.target) is None:
                raise TargetGone(f"node {record.target.name} has left the swarm")
            return
        await super().check(record)

    def _apply(self, record: AppliedFault) -> None:
        target = record.target
        if record.fault == "drain":
            node = self._node(target)
            if node is None:
                raise TargetGone(f"node {target.name} left the swarm before the drain")
            _set_availability(node, "drain")
            return
        container = self._container(target)
        if container is None:
            raise TargetGone(f"task {target.name} lost its container before the {record.fault}")
        try:
            if record.fault == "crash":
                crash(container, record.params["action"], record.params["signal"])
            elif record.fault == "pause":
                container.pause()
            elif record.fault == "remove":
                container.remove(force=True)
        except docker.errors.APIError as exc:
            raise DriverError(f"{record.fault} on {target.name}: {exc.explanation}") from exc

    def _take_back(self, record: AppliedFault) -> None:
        if record.fault == "drain":
            node = self._node(record.target)
            if node is not None and node.attrs["Spec"].get("Availability") == "drain":
                _set_availability(node, record.undo["availability"])
            return
        if record.undo.get("unpause"):
            container = self._container(record.target)
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                if container is not None and container.status == "paused":
                    container.unpause()


def _set_availability(node: Any, availability: str) -> None:
    """Set ``node``'s availability (its spec's version read just before)."""
    node.reload()
    spec = dict(node.attrs["Spec"])
    spec["Availability"] = availability
    if not node.update(spec):
        raise DriverError(f"the engine did not set node {node.id[:12]} to {availability}")
