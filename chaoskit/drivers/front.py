"""A proxy chaoskit places in front of a process's or container's port, so that network faults
(latency, bandwidth, partition …) reach traffic to it: its clients connect to the proxy's port,
the proxy connects to the target, and the toxics go on the proxy.

For a container the proxy dials the port as published on the host (or, unpublished, the
container's address on its first network), so faults reach traffic that enters through the
proxy, not container-to-container traffic on a Docker network (use ``partition`` with mode
``disconnect`` for that).
"""

from __future__ import annotations

from typing import Any

from .base import DriverError, Target
from .toxiproxy import ToxiproxyClient, ToxiproxyError, proxy_target

__all__ = ["front_name", "place_front", "remove_front", "upstream_address"]


def front_name(target: Target, port: int) -> str:
    """The name of the proxy in front of ``target``'s ``port``."""
    return f"chaoskit-front-{target.name}-{port}"


def upstream_address(target: Target, port: int, docker_client: Any | None = None) -> str:
    """Where the proxy in front of ``target``'s ``port`` connects to."""
    if target.kind == "process":
        return f"127.0.0.1:{port}"
    if target.kind != "container":
        raise DriverError(f"a {target.kind} target needs no proxy in front of it")
    if docker_client is None:
        raise DriverError("a container's address needs the Docker engine")
    container = docker_client.containers.get(target.ref["id"])
    settings = container.attrs["NetworkSettings"]
    for binding in (settings.get("Ports") or {}).get(f"{port}/tcp") or []:
        host = binding.get("HostIp") or "127.0.0.1"
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{binding['HostPort']}"
    for network in (settings.get("Networks") or {}).values():
        if network.get("IPAddress"):
            return f"{network['IPAddress']}:{port}"
    raise DriverError(
        f"container {target.name} neither publishes port {port} nor has a network address"
    )


async def place_front(
    client: ToxiproxyClient,
    target: Target,
    port: int,
    *,
    listen: str = "127.0.0.1:0",
    docker_client: Any | None = None,
) -> Target:
    """Create (or reuse) the proxy in front of ``target``'s ``port``; return it as a target.

    The returned target keeps the original's name and labels, so reports read naturally; its
    ``ref`` names the proxy and the port clients must use (``listen``).
    """
    name = front_name(target, port)
    upstream = upstream_address(target, port, docker_client)
    try:
        proxy = await client.create_proxy(name, upstream, listen)
    except ToxiproxyError as error:
        if error.status != 409:
            raise
        proxy = await client.proxy(name)
        if proxy.upstream != upstream:
            proxy = await client.update_proxy(name, upstream=upstream, enabled=True)
    placed = proxy_target(client.url, proxy.name, name=target.name)
    return Target(
        "proxy",
        placed.name,
        dict(target.labels),
        {**placed.ref, "listen": proxy.listen, "in_front_of": target.to_json(), "port": port},
    )


async def remove_front(client: ToxiproxyClient, front: Target) -> None:
    """Delete a proxy made by :func:`place_front` (closing its connections); gone is fine."""
    try:
        await client.delete_proxy(str(front.ref["proxy"]))
    except ToxiproxyError as error:
        if not error.gone:
            raise
