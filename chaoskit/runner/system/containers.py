"""Containers as parts: created on the Docker engine from ``system.containers`` (never pulled),
on their networks, with a tmpfs or libfaketime when their faults need it; each a target."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...drivers.base import DriverError, Target
from ...drivers.engines import Engine
from ...launch.faketime import container_faketime
from ...model.system import ContainerSpec, EngineSpec
from ..errors import BringUpError
from .parts import RUN_LABEL, Parts, cannot_start, free_ports, ready

__all__ = ["start_containers", "use_engines"]


def use_engines(parts: Parts, specs: list[EngineSpec]) -> None:
    """Name the experiment's Docker engines (their hosts and TLS files rendered); containers
    are then started on them and found on them as ``ENGINE/CONTAINER``."""

    def path(given: str | None) -> str | None:  # absolute: a rollback may run elsewhere
        return None if given is None else os.path.abspath(parts.render(given))

    for spec in specs:
        tls = None if spec.tls is None else {
            "ca": path(spec.tls.ca), "cert": path(spec.tls.cert), "key": path(spec.tls.key),
            "verify": spec.tls.verify,
        }  # fmt: skip
        parts.up.engines.append(Engine(spec.name, parts.render(spec.host), tls, dict(spec.labels)))


async def start_containers(parts: Parts, specs: list[ContainerSpec]) -> None:
    """Start each of ``specs`` on its Docker engine (ports published on that engine's host's
    127.0.0.1 only), in order, each ready before the next."""
    import docker.errors  # noqa: PLC0415 - the Docker SDK loads only when containers are asked for

    clients: dict[str, Any] = {}
    for spec in specs:
        engine = parts.up.engine(spec.engine)
        if engine.name not in clients:
            try:
                clients[engine.name] = await asyncio.to_thread(engine.client)
            except DriverError as error:
                raise BringUpError(f"system.containers: {error}") from None
            parts.stops.append(clients[engine.name].close)
    wanted = {cport for spec in specs for cport in spec.ports}
    for name, port in zip(sorted(wanted), free_ports(len(wanted)), strict=True):
        parts.up.ports[name] = port
    for spec in specs:
        engine = parts.up.engine(spec.engine)
        with contextlib.suppress(docker.errors.NotFound):
            clients[engine.name].containers.get(spec.name)
            on = f" on {engine.described()}" if parts.up.engines else ""
            where = f"-H {engine.host} " if engine.host else ""
            raise BringUpError(
                f"a container named '{spec.name}' already exists{on}: remove it "
                f"(docker {where}rm -f {spec.name}) or rename it in system.containers"
            )
    for index, spec in enumerate(specs):
        engine = parts.up.engine(spec.engine)
        await _container(parts, clients[engine.name], engine, spec, index)


async def _container(
    parts: Parts, client: Any, engine: Engine, spec: ContainerSpec, index: int
) -> None:
    import docker.errors  # noqa: PLC0415

    part, field = f"container '{spec.name}'", f"system.containers[{index}]"

    def refused(error: Any, what: str) -> Exception:
        """The engine's answer: a request it calls invalid (4xx: no such image, a command
        it cannot exec) is the experiment's mistake; anything else, the engine's."""
        explanation = error.explanation or str(error)
        if error.is_client_error():
            return cannot_start(part, explanation, what)
        return BringUpError(f"container {spec.name}: {explanation}")

    env = {k: parts.render(v) for k, v in spec.env.items()}
    extra: dict[str, Any] = {}
    skew: Path | None = None
    if spec.faketime:
        faked, volumes, skew = container_faketime(parts.run_dir / "faketime", spec.name)
        env.update(faked)
        extra["volumes"] = volumes
    if spec.tmpfs is not None:
        extra["tmpfs"] = {spec.tmpfs.path: f"size={spec.tmpfs.size.bytes}"}
    if spec.restart != "no":
        extra["restart_policy"] = {"Name": spec.restart}
    try:
        container = client.containers.create(
            spec.image,
            [parts.render(a) for a in spec.command] if spec.command else None,
            name=spec.name,
            environment=env,
            labels={**spec.labels, RUN_LABEL: parts.run_id},
            ports={
                f"{cport}/tcp": ("127.0.0.1", parts.up.ports[name])
                for name, cport in spec.ports.items()
            },
            **extra,
        )
    except docker.errors.ImageNotFound:
        problem = (
            f"no image '{spec.image}' on this engine; build it locally (chaoskit never pulls "
            "from a registry)"
        )
        raise cannot_start(part, problem, f"{field}.image") from None
    except docker.errors.APIError as error:
        raise refused(error, field) from None

    def remove() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    named = bool(parts.up.engines)
    where = {"engine": engine.to_json()} if named else {}
    parts.track({"key": f"container:{container.id}", "kind": "container", "name": spec.name,
                "id": container.id, **where}, remove)  # fmt: skip
    try:
        for network_name in spec.networks:
            try:
                network = client.networks.get(network_name)
            except docker.errors.NotFound:
                network = client.networks.create(network_name, labels={RUN_LABEL: parts.run_id})
                entry = {"key": f"network:{network.id}", "kind": "network", "id": network.id,
                         **where}  # fmt: skip
                parts.track(entry, _network_remover(network))
            network.connect(container, aliases=list(spec.aliases) or None)
    except docker.errors.APIError as error:
        raise refused(error, f"{field}.networks") from None
    try:
        container.start()
    except docker.errors.APIError as error:  # e.g. a command it cannot exec
        raise refused(error, f"{field}.command (and the image's entrypoint)") from None

    def alive() -> str | None:
        container.reload()
        if container.status in ("exited", "dead"):
            logs = container.logs(tail=12).decode(errors="replace")
            code = container.attrs["State"].get("ExitCode")
            return f"exited with {code} before it was ready; its last output:\n{logs}"
        return None

    if spec.ready is not None:
        await ready(spec.ready, parts.render, alive, f"container {spec.name}")
    ref: dict[str, Any] = {"id": container.id, **where}
    if skew is not None:
        ref["faketime"] = str(skew)
    if spec.tmpfs is not None:
        ref["tmpfs"] = spec.tmpfs.path
    name = f"{engine.name}/{spec.name}" if named else spec.name
    labels = {**spec.labels, RUN_LABEL: parts.run_id}
    if named:
        labels.update(engine.labels)
    target = Target("container", name, labels, ref)
    parts.up.add_source(lambda: [target])


def _network_remover(network: Any) -> Callable[[], None]:
    def remove() -> None:
        import docker.errors  # noqa: PLC0415

        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()

    return remove
