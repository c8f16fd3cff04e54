"""Proxies the runner places in front of process and container targets, so that network faults
on them have a path to act on: each selected process or container gets a proxy listening on the
system port its target's ``listen`` names, relaying to the target's ``port``. They are placed
once the system is up, before any traffic, and go with the proxy server at teardown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..drivers.base import DriverError, Target
from ..drivers.front import place_front
from ..drivers.toxiproxy import ToxiproxyClient
from ..model import Experiment
from ..model.system import ContainerTarget, ProcessTarget
from .system import RunningSystem
from .targets import TargetError, select

__all__ = ["FrontError", "Fronts", "fronted_keys", "place_fronts"]

_PLURAL = {"process": "es", "container": "s"}


class FrontError(Exception):
    """A proxy could not be placed in front of a target; nothing was faulted yet."""


@dataclass
class Fronts:
    """The proxy in front of each process or container, by target key and target name."""

    placed: dict[tuple[str, str], Target] = field(default_factory=dict)

    def of(self, key: str, target: Target) -> Target | None:
        """The proxy in front of ``target`` (selected by target ``key``), if one was placed."""
        return self.placed.get((key, target.name))

    def to_json(self) -> dict[str, dict[str, Any]]:
        """Per target key and name: where clients connect and what the proxy dials."""
        found: dict[str, dict[str, Any]] = {}
        for (key, name), front in sorted(self.placed.items()):
            found.setdefault(key, {})[name] = {
                "proxy": front.ref["proxy"],
                "listen": front.ref["listen"],
                "port": front.ref["port"],
            }
        return found


def fronted_keys(experiment: Experiment) -> list[str]:
    """Keys of the process and container targets that declare a ``listen`` port: each gets its
    proxy whether or not a fault uses it, since its clients connect through that port."""
    return sorted(
        key
        for key, spec in experiment.targets.items()
        if isinstance(spec, ProcessTarget | ContainerTarget) and spec.listen is not None
    )


def _listen_ports(
    key: str, spec: ProcessTarget | ContainerTarget, members: list[Target]
) -> Iterator[tuple[Target, str]]:
    """Each selected member with the name of the system port its proxy listens on."""
    listen = spec.listen
    if listen is None:  # no port to listen on: no proxy (validation asks for one)
        return
    if isinstance(listen, str):
        if len(members) > 1:
            names = ", ".join(m.name for m in members)
            raise FrontError(
                f"target '{key}' selects {len(members)} {spec.kind}{_PLURAL[spec.kind]} "
                f"({names}) but 'listen' "
                f"names one port: map each to a port of its own, e.g. listen: "
                f"{{{members[0].name}: {listen}, {members[1].name}: <another port>}}"
            )
        yield members[0], listen
        return
    for member in members:
        if member.name not in listen:
            raise FrontError(
                f"target '{key}' selects {spec.kind} '{member.name}', which 'listen' gives no "
                f"port (it maps: {', '.join(sorted(listen)) or 'nothing'})"
            )
        yield member, listen[member.name]


async def place_fronts(experiment: Experiment, live: RunningSystem) -> Fronts:
    """Place a proxy in front of every process and container a network fault may hit."""
    fronts = Fronts()
    keys = fronted_keys(experiment)
    if not keys:
        return fronts
    if live.front_url is None:
        raise FrontError("no proxy server was started for proxies in front of targets")
    try:
        available = await asyncio.to_thread(live.targets)
    except TargetError as error:
        raise FrontError(str(error)) from None
    docker_client: Any = None
    try:
        async with ToxiproxyClient(live.front_url) as client:
            for key in keys:
                spec = experiment.targets[key]
                if not isinstance(spec, ProcessTarget | ContainerTarget):
                    continue  # fronted_keys gives only these
                try:
                    members = select(key, spec, available)
                except TargetError as error:
                    raise FrontError(str(error)) from None
                for member, port_name in _listen_ports(key, spec, members):
                    port = (
                        spec.port_of(member.name) if isinstance(spec, ProcessTarget) else spec.port
                    )
                    if port is None:
                        raise FrontError(
                            f"target '{key}' selects process '{member.name}', which 'port' "
                            "gives no port to relay to: map every process it selects"
                        )
                    upstream = live.ports[port] if isinstance(port, str) else port
                    if member.kind == "container" and docker_client is None:
                        import docker  # noqa: PLC0415 - only for containers

                        docker_client = docker.from_env()
                    listen = f"127.0.0.1:{live.ports[port_name]}"
                    try:
                        fronts.placed[(key, member.name)] = await place_front(
                            client, member, upstream, listen=listen, docker_client=docker_client
                        )
                    except DriverError as error:
                        raise FrontError(
                            f"cannot place a proxy in front of {member.kind} {member.name} "
                            f"(target '{key}'): {error}"
                        ) from None
    finally:
        if docker_client is not None:
            docker_client.close()
    return fronts
