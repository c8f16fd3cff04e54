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
from collections.abc import Iterator, Sequence
from typing import Any

import docker.errors
import requests

from ..model import Fault
from ..model.faults import CrashFault, DrainFault, PauseFault, RemoveFault
from ..model.system import SERVICE_LABEL
from .base import AppliedFault, DriverError, Target, TargetGone
from .docker import DockerDriver, crash, unreachable
from .engines import ENVIRONMENT, Engine, engine_of

__all__ = ["SwarmDriver", "running_tasks", "service_tasks", "swarm_nodes"]


def _listed(engines: Sequence[Engine]) -> list[tuple[Engine, Any, dict[str, Any]]]:
    """Each engine with a client and its ``docker info`` Swarm section (the caller closes the
    clients); :class:`DriverError` for an engine that does not answer (the clients opened so
    far closed)."""
    found: list[tuple[Engine, Any, dict[str, Any]]] = []
    try:
        for engine in engines or [ENVIRONMENT]:
            client = engine.client()
            found.append((engine, client, {}))
            try:
                found[-1] = (engine, client, client.info().get("Swarm") or {})
            except (docker.errors.DockerException, requests.RequestException) as error:
                raise DriverError(f"{engine.described()} does not answer: {error}") from None
    except DriverError:
        for _, client, _ in found:
            client.close()
        raise
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


@contextlib.contextmanager
def _swarms(
    engines: Sequence[Engine], what: str
) -> Iterator[tuple[dict[str | None, Engine], list[tuple[Engine, Any]]]]:
    """For a block listing the swarm's ``what``: the engine that is each node (by node id),
    and one manager per swarm with its client; the clients closed after, and the engine's
    errors said as :class:`DriverError`."""
    listed = _listed(engines)
    try:
        yield {swarm.get("NodeID"): engine for engine, _, swarm in listed}, _managers(listed)
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DriverError(f"cannot list the swarm's {what}: {error}") from None
    finally:
        for _, client, _ in listed:
            client.close()


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
    with _swarms(engines, "services") as (by_node, managers):
        found: dict[str, Target] = {}
        for _, client in managers:
            hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
            for service in client.services.list():
                labels = dict(service.attrs["Spec"].get("Labels") or {})
                for task in running_tasks(service):
                    node = by_node.get(task.get("NodeID"))
                    container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
                    if node is None or not container:
                        continue  # on a node no engine of the experiment reaches
                    hostname = hostnames.get(task["NodeID"], task["NodeID"])
                    name = _named(node, f"{service.name}.{task.get('Slot') or hostname}",
                                  bool(engines))  # fmt: skip
                    ref = {"id": container, "task": task["ID"], "service": service.name}
                    if engines:
                        ref["engine"] = node.to_json()
                    where = {"node": hostname, SERVICE_LABEL: service.name}
                    found[task["ID"]] = Target(
                        "service", name, {**labels, **where, **node.labels}, ref
                    )
        return sorted(found.values(), key=lambda t: t.name)


def swarm_nodes(engines: Sequence[Engine] = ()) -> list[Target]:
    """The nodes of the swarms ``engines`` manage, as ``node`` targets called by hostname (on
    named engines ``ENGINE/HOSTNAME``, by the engine that is the node if one is, else the
    manager), with the node's labels and, where an engine is the node, that engine's (else
    ``host``: its hostname). Each record reaches the node through a manager."""
    with _swarms(engines, "nodes") as (by_node, managers):
        found = []
        for manager, client in managers:
            for node in client.nodes.list():
                hostname = node.attrs["Description"]["Hostname"]
                labels = dict(node.attrs["Spec"].get("Labels") or {})
                own = by_node.get(node.id)
                if own is not None:  # where it runs is its engine's to say
                    labels.update(own.labels)
                else:  # no engine of the experiment is this node: none of their labels
                    labels.setdefault("host", hostname)
                ref: dict[str, Any] = {"node": node.id}
                if engines:
                    ref["engine"] = manager.to_json()
                name = _named(own or manager, hostname, bool(engines))
                found.append(Target("node", name, labels, ref))
        return sorted(found, key=lambda t: t.name)


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
        self._running(target)
        if isinstance(fault, CrashFault):
            if fault.action == "restart" or fault.keep_down:
                raise DriverError(
                    "a task is restarted by its orchestrator, not by chaoskit: use action "
                    "'kill' or 'stop', without keep_down"
                )
            self._replaced(target, "exits" if fault.action == "stop" else "fails")
            params = {"action": fault.action, "signal": fault.signal}
            return AppliedFault(self.name, "crash", target, params, {})
        if isinstance(fault, PauseFault):
            return AppliedFault(self.name, "pause", target, {}, {"unpause": True})
        if isinstance(fault, RemoveFault):
            self._replaced(target, "fails")
            return AppliedFault(self.name, "remove", target, {}, {})
        raise DriverError(f"the swarm driver cannot apply a {fault.type} fault to a task")

    def _running(self, target: Target) -> Any:
        """The task's container, while the task is the one planned on and still running;
        :class:`TargetGone` once the orchestrator has replaced it or it has ended."""
        try:
            task = self.client(engine_of(target.ref)).api.inspect_task(target.ref["task"])
        except docker.errors.NotFound:
            task = {}
        except docker.errors.APIError as error:
            raise DriverError(f"task {target.name}: {error.explanation}") from None
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise unreachable(target, error) from None
        state = (task.get("Status") or {}).get("State")
        if state != "running" or task.get("DesiredState") != "running":
            raise TargetGone(f"task {target.name} is not running any more ({state or 'gone'})")
        container = self._container(target)
        if container is None or container.status != "running":
            raise TargetGone(f"task {target.name} has no running container any more")
        return container

    def _replaced(self, target: Target, ending: str) -> None:
        """Refuse a fault after which the orchestrator would not start the task again: a
        service's restart condition ``none``, or ``on-failure`` for a task that exits
        cleanly (a graceful stop may exit 0). The service would stay short after the run."""
        try:
            spec = self.client(engine_of(target.ref)).services.get(target.ref["service"]).attrs
        except docker.errors.NotFound:
            raise TargetGone(f"service {target.ref['service']} is gone") from None
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise unreachable(target, error) from None
        policy = spec["Spec"].get("TaskTemplate", {}).get("RestartPolicy") or {}
        condition = policy.get("Condition", "any")
        if condition == "none" or (condition == "on-failure" and ending == "exits"):
            raise DriverError(
                f"service {target.ref['service']} restarts its tasks on '{condition}': after "
                f"this fault its orchestrator would not start {target.name} again, and the "
                "service would stay short after the run; use a restart condition that covers "
                "it (any), or a pause"
            )

    def _node(self, target: Target) -> Any | None:
        return self.look_up(target, "nodes", "node")

    async def check(self, record: AppliedFault) -> None:
        """The engine answers and the task still runs (or the node is still in the swarm)."""
        if record.target.kind == "node":
            if await asyncio.to_thread(self._node, record.target) is None:
                raise TargetGone(f"node {record.target.name} has left the swarm")
            return
        await asyncio.to_thread(self._running, record.target)

    def _apply(self, record: AppliedFault) -> None:
        target = record.target
        if record.fault == "drain":
            node = self._node(target)
            if node is None:
                raise TargetGone(f"node {target.name} left the swarm before the drain")
            _set_availability(node, "drain")
            return
        container = self._running(target)
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
            with contextlib.suppress(docker.errors.NotFound):  # gone: nothing is paused
                if container is not None and container.status == "paused":
                    container.unpause()


def _set_availability(node: Any, availability: str, tries: int = 5) -> None:
    """Set ``node``'s availability, its spec's version read just before; an update that
    another one overtook ("update out of sequence") is made again on the new version."""
    for attempt in range(tries):
        node.reload()
        spec = dict(node.attrs["Spec"])
        spec["Availability"] = availability
        try:
            node.update(spec)
            return
        except docker.errors.APIError as error:
            if "out of sequence" not in str(error.explanation) or attempt == tries - 1:
                raise DriverError(
                    f"node {node.id[:12]} could not be set to {availability}: {error.explanation}"
                ) from None
