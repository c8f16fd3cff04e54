"""Faults on containers through Docker engines (each record names its engine; by default the
one ``DOCKER_HOST`` names): crash (kill, stop, restart), pause, network partitions that put
aliases and addresses back on reconnect, and a full disk (a balloon in the container's tmpfs;
needs the engine on this machine)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Self

import docker
import docker.errors
import requests

from ..model import Fault
from ..model.faults import CrashFault, DiskFullFault, PartitionFault, PauseFault
from .balloon import deflate, inflate
from .base import (
    AppliedFault,
    DriverConfig,
    DriverError,
    Target,
    TargetGone,
    Unreachable,
    disk_params,
)
from .engines import ENVIRONMENT, Engine, engine_of

__all__ = ["DockerDriver", "container_target", "crash", "unreachable"]


def container_target(engine: Engine, container: Any, *, named: bool) -> Target:
    """``container`` on ``engine`` as a target. On a ``named`` engine (the experiment names
    its engines) it is called ``ENGINE/CONTAINER``, carries the engine's labels over its own
    (where it runs is the engine's to say), and its ref says how to reach the engine."""
    if not named:
        return Target("container", container.name, dict(container.labels), {"id": container.id})
    return Target(
        "container",
        f"{engine.name}/{container.name}",
        {**container.labels, **engine.labels},
        {"id": container.id, "engine": engine.to_json()},
    )


class DockerDriver:
    """Crash, pause and partition for containers, on whichever engine each target's record
    names (by default the environment's)."""

    name = "docker"

    def __init__(self, client: Any | None = None) -> None:
        """``client``: a connected client to use for the environment's engine (the caller
        closes it); other engines are connected on first use."""
        self._given = client
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._connecting: dict[tuple[str | None, str], threading.Lock] = {}
        """One lock per engine: an engine slow to refuse holds up only its own calls."""
        self._locks = threading.Lock()

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver (engines are reached as each record says)."""
        return cls()

    def close(self) -> None:
        """Close the engine connections this driver opened."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> DockerDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def client(self, engine: Engine = ENVIRONMENT) -> Any:
        """The client for ``engine``, connected on first use (so planning errors come first);
        one per engine, however many of the driver's calls (each in a worker thread) ask for
        it at once. :class:`Unreachable` if the engine does not answer."""
        if engine.host is None and self._given is not None:
            return self._given
        if (found := self._clients.get(engine.key)) is not None:
            return found
        with self._locks:
            lock = self._connecting.setdefault(engine.key, threading.Lock())
        with lock:
            if engine.key not in self._clients:
                self._clients[engine.key] = engine.client()
            return self._clients[engine.key]

    def _container(self, target: Target) -> Any | None:
        return self.look_up(target, "containers", "id")

    def look_up(self, target: Target, collection: str, key: str) -> Any | None:
        """The object ``target.ref[key]`` names in the engine's ``collection`` (``containers``,
        ``nodes``), None if it is gone; :class:`Unreachable` if the engine does not answer."""
        try:
            return getattr(self.client(engine_of(target.ref)), collection).get(target.ref[key])
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as error:
            raise DriverError(f"{target.kind} {target.name}: {error.explanation}") from None
        except (docker.errors.DockerException, requests.ConnectionError, requests.Timeout) as error:
            raise unreachable(target, error) from None

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on ``target``, with what revert will need; touches nothing."""
        if target.kind != "container":
            raise DriverError(f"the docker driver cannot act on a {target.kind} target")
        container = self._container(target)
        if container is None:
            raise TargetGone(f"container {target.name} ({target.ref['id'][:12]}) does not exist")
        if isinstance(fault, CrashFault):
            params: dict[str, str | bool] = {"action": fault.action, "signal": fault.signal}
            if fault.keep_down:
                params["keep_down"] = True
            return AppliedFault(self.name, "crash", target, params, {"ensure_running": True})
        if isinstance(fault, PauseFault):
            return AppliedFault(self.name, "pause", target, {}, {"unpause": True})
        if isinstance(fault, PartitionFault) and fault.mode == "disconnect":
            networks = _networks(container, fault.network)
            cut = {"networks": sorted(networks)}
            return AppliedFault(self.name, "partition", target, cut, {"connect": networks})
        if isinstance(fault, DiskFullFault):
            mounts = sorted(container.attrs["HostConfig"].get("Tmpfs") or {})
            path = fault.path or (mounts[0] if len(mounts) == 1 else None)
            if path is None or path not in mounts:
                raise DriverError(
                    f"disk_full needs a tmpfs on {target.name}; it has "
                    f"{', '.join(mounts) or 'none'} (give 'path' when there are several)"
                )
            params = disk_params(fault, path)
            return AppliedFault(self.name, "disk_full", target, params, {"deflate": path})
        raise DriverError(f"the docker driver cannot apply a {fault.type} fault")

    async def check(self, record: AppliedFault) -> None:
        """The engine answers and the container is still there."""
        if await asyncio.to_thread(self._container, record.target) is None:
            raise TargetGone(f"container {record.target.name} does not exist any more")

    async def aclose(self) -> None:
        """Close the engine connection if this driver opened it."""
        self.close()

    async def apply(self, record: AppliedFault) -> None:
        """Apply the planned fault (Docker SDK calls run in a worker thread)."""
        await asyncio.to_thread(self._apply, record)

    async def revert(self, record: AppliedFault) -> None:
        """Take the fault back; idempotent, and a no-op once the container is gone."""
        await asyncio.to_thread(self._revert, record)

    def _apply(self, record: AppliedFault) -> None:
        container = self._container(record.target)
        if container is None:
            raise TargetGone(f"container {record.target.name} disappeared before the fault")
        try:
            if record.fault == "crash" and record.params.get("keep_down"):
                container.kill(signal=record.params["signal"])  # a manual stop: it stays down
            elif record.fault == "crash":
                crash(container, record.params["action"], record.params["signal"])
            elif record.fault == "pause":
                container.pause()
            elif record.fault == "partition":
                for name in record.params["networks"]:
                    container.client.networks.get(name).disconnect(container)
            elif record.fault == "disk_full":
                pid = _local_pid(container)
                if pid is None:
                    raise DriverError(
                        f"disk_full on {record.target.name} needs the Docker engine on this "
                        "machine (its processes are reached through /proc)"
                    )
                p = record.params
                inflate(pid, p["path"], p.get("leave"), p.get("free_percent"))
        except docker.errors.APIError as exc:
            raise DriverError(f"{record.fault} on {record.target.name}: {exc.explanation}") from exc

    def _revert(self, record: AppliedFault) -> None:
        try:
            self._take_back(record)
        except (requests.ConnectionError, requests.Timeout) as error:  # gone, or hung, midway
            raise unreachable(record.target, error) from None

    def _take_back(self, record: AppliedFault) -> None:
        container = self._container(record.target)
        if container is None:
            return
        undo = record.undo
        with contextlib.suppress(docker.errors.NotFound):
            if undo.get("unpause") and container.status == "paused":
                container.unpause()
            for name, settings in undo.get("connect", {}).items():
                container.reload()
                if name not in container.attrs["NetworkSettings"]["Networks"]:
                    _connect(container.client.networks.get(name), container, settings)
            if undo.get("ensure_running"):
                _await_exit(container, record)
                if container.status in ("exited", "created"):
                    container.start()
            if "deflate" in undo and (pid := _local_pid(container)) is not None:
                deflate(pid, undo["deflate"])


def unreachable(target: Target, error: Exception) -> Unreachable:
    """The error for ``target``'s engine not answering."""
    return Unreachable(f"Docker {engine_of(target.ref).described()} does not answer: {error}")


def _networks(container: Any, only: str | None) -> dict[str, dict[str, Any]]:
    """The container's networks with what reconnecting needs: aliases and addresses."""
    attached = container.attrs["NetworkSettings"]["Networks"]
    if only is not None and only not in attached:
        raise DriverError(f"container {container.name} is not on network {only}")
    found = {}
    for name, settings in attached.items():
        if only is not None and name != only:
            continue
        aliases = [a for a in settings.get("Aliases") or [] if not container.id.startswith(a)]
        found[name] = {
            "aliases": aliases,
            "ipv4": (settings.get("IPAMConfig") or {}).get("IPv4Address") or None,
        }
    return found


def _connect(network: Any, container: Any, settings: dict[str, Any]) -> None:
    connect = partial(network.connect, container, aliases=settings["aliases"] or None)
    if settings.get("ipv4"):
        connect(ipv4_address=settings["ipv4"])
    else:
        connect()


def crash(container: Any, action: str, signame: str) -> None:
    """Kill (with ``signame``, from the host when the engine is local), stop or restart."""
    if action == "stop":
        container.stop(timeout=10)
    elif action == "restart":
        container.restart(timeout=10)
    else:
        pid = _local_pid(container)
        if pid is not None:
            # From the host, the crash looks like one: Docker's restart policy applies.
            # (``docker kill`` counts as a manual stop, after which it would not.)
            os.kill(pid, signal.Signals[signame])
        else:
            container.kill(signal=signame)


def _await_exit(container: Any, record: AppliedFault, timeout: float = 10.0) -> None:
    """Before deciding whether a crashed container needs starting, let the crash finish.

    A kill is a signal from the host: the process dies a moment later, and the engine notices
    some 200-300 ms after that, saying "running" meanwhile. So, unless the container has been
    (re)started since the fault was planned: give a SIGKILLed process up to ``timeout`` to die
    and any other signal a second (a process that survives it is left alone), then wait for
    the engine to catch up. Only a local engine's pids can be read; a remote one is trusted.
    """
    if not _engine_is_local(container) or container.status != "running":
        return
    if _started_at(container) > record.planned_at:
        return  # restarted since: the crash is over
    fatal = record.params.get("signal") == "SIGKILL"
    deadline = time.monotonic() + (timeout if fatal else 1.0)
    pid = int(container.attrs["State"].get("Pid") or 0)
    while pid and not _zombie(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if pid and not _zombie(pid):
        return  # it survived the signal
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("running", "restarting"):
            return
        if container.status == "running" and _started_at(container) > record.planned_at:
            return  # the restart policy brought it back
        time.sleep(0.02)


def _started_at(container: Any) -> float:
    """When the engine last started the container (seconds since the epoch)."""
    text = str(container.attrs["State"].get("StartedAt") or "")
    try:
        whole, _, fraction = text.rstrip("Z").partition(".")
        stamp = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
    return stamp + float(f"0.{fraction or 0}")


def _zombie(pid: int) -> bool:
    """Dead, or dead and not yet reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def _engine_is_local(container: Any) -> bool:
    """Does the engine run on this machine (a unix socket, not a TCP or SSH host)?"""
    return str(container.client.api.base_url).startswith("http+docker://local")


def _local_pid(container: Any) -> int | None:
    """The container's main process on this machine, if the engine is local: the pid's cgroup
    must name the container, so a remote engine's pid never signals a local process."""
    pid = int(container.attrs["State"].get("Pid") or 0)
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text() if pid else ""
    except OSError:
        return None
    return pid if container.id in cgroup else None
