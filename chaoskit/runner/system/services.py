"""Docker Swarm services as parts: created on a manager from ``system.services`` (never pulled),
journaled before the run waits for their replicas, removed on every exit path. Their running
tasks are ``service`` targets (``drivers/swarm.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ...drivers.base import DriverError
from ...drivers.engines import Engine
from ...model.system import ServiceSpec
from ..errors import BringUpError
from .parts import RUN_LABEL, Parts, cannot_start

__all__ = ["start_services"]

_NS = 1_000_000_000
"""Nanoseconds in a second: the unit of Swarm's durations."""


async def start_services(parts: Parts, specs: list[ServiceSpec]) -> None:
    """Create each of ``specs`` on its engine, in order, each with all its replicas running
    before the next."""
    import docker.errors  # noqa: PLC0415 - the Docker SDK loads only when services are asked for
    import requests  # noqa: PLC0415

    for index, spec in enumerate(specs):
        engine = parts.up.engine(spec.engine)
        try:
            client = await asyncio.to_thread(engine.client)
        except DriverError as error:
            raise BringUpError(f"system.services: {error}") from None
        parts.stops.append(client.close)
        try:
            await asyncio.to_thread(_create, parts, client, engine, spec, index)
            await _running(client, spec, index)
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise BringUpError(f"service {spec.name}: {engine.described()}: {error}") from None


def _create(parts: Parts, client: Any, engine: Engine, spec: ServiceSpec, index: int) -> None:
    import docker.errors  # noqa: PLC0415 - the Docker SDK loads only when services are asked for
    import docker.types  # noqa: PLC0415

    part, field = f"service '{spec.name}'", f"system.services[{index}]"
    swarm = client.info().get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        raise cannot_start(
            part,
            f"{engine.described()} is not a manager of a swarm ({swarm.get('LocalNodeState')}):"
            " run `docker swarm init` there, or name a manager",
            f"{field}.engine",
        )
    try:
        client.services.get(spec.name)
    except docker.errors.NotFound:
        pass
    else:
        where = f"-H {engine.host} " if engine.host else ""
        raise BringUpError(
            f"a service named '{spec.name}' already exists on {engine.described()}: remove it "
            f"(docker {where}service rm {spec.name}) or rename it in system.services"
        )
    restart, update = spec.restart, spec.update
    ports = {p.published: (p.target, "tcp", p.mode) for p in spec.ports}
    try:
        service = client.services.create(
            spec.image,
            args=[parts.render(a) for a in spec.command] if spec.command else None,
            name=spec.name,
            env=[f"{k}={parts.render(v)}" for k, v in spec.env.items()],
            labels={**spec.labels, RUN_LABEL: parts.run_id},
            mode=docker.types.ServiceMode("replicated", replicas=spec.replicas),
            endpoint_spec=docker.types.EndpointSpec(ports=ports) if ports else None,
            restart_policy=docker.types.RestartPolicy(
                condition=restart.condition,
                delay=restart.delay.nanoseconds,
                max_attempts=restart.max_attempts or 0,
                window=restart.window.nanoseconds if restart.window else 0,
            ),
            update_config=docker.types.UpdateConfig(
                parallelism=update.parallelism,
                delay=update.delay.nanoseconds,
                failure_action=update.failure_action,
                order=update.order,
            ),
        )
    except docker.errors.APIError as error:
        explanation = error.explanation or str(error)
        if error.is_client_error():
            raise cannot_start(part, explanation, field) from None
        raise BringUpError(f"service {spec.name}: {explanation}") from None
    entry = {"key": f"service:{service.id}", "kind": "service", "name": spec.name,
             "id": service.id, "engine": engine.to_json()}  # fmt: skip
    parts.track(entry, lambda: _remove(service))


async def _running(client: Any, spec: ServiceSpec, index: int) -> None:
    """Wait until all of ``spec``'s replicas run; refuse the run (saying what its tasks said)
    when they do not within its ``ready_timeout``."""
    from ...drivers.swarm import running_tasks  # noqa: PLC0415

    service = await asyncio.to_thread(client.services.get, spec.name)
    deadline = asyncio.get_running_loop().time() + spec.ready_timeout.seconds
    while len(await asyncio.to_thread(running_tasks, service)) < spec.replicas:
        if asyncio.get_running_loop().time() > deadline:
            said = await asyncio.to_thread(_task_errors, service)
            raise BringUpError(
                f"service {spec.name}: not all of its {spec.replicas} replicas ran within "
                f"{spec.ready_timeout} (system.services[{index}].ready_timeout){said}"
            )
        await asyncio.sleep(0.25)  # the engine's task list offers nothing to await


def _task_errors(service: Any) -> str:
    """What the service's tasks last said went wrong, if anything."""
    said = sorted({t["Status"].get("Err") for t in service.tasks() if t["Status"].get("Err")})
    return f"; its tasks said: {'; '.join(said)}" if said else ""


def _remove(service: Any) -> None:
    import docker.errors  # noqa: PLC0415

    with contextlib.suppress(docker.errors.NotFound):
        service.remove()
