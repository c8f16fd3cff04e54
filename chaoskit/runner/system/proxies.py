"""Proxies as parts: chaoskit's own proxy server for proxies in front of targets, and the
user's Toxiproxy servers (one unnamed, and any number named) whose proxies are targets."""

from __future__ import annotations

import sys
from functools import partial

import httpx

from ...drivers.base import Target
from ...model.system import ReadyCheck, ToxiproxyServer
from ..errors import BringUpError
from .parts import Parts, free_ports, ready
from .spawn import spawn

__all__ = ["start_front_proxy", "use_toxiproxy", "use_toxiproxy_servers"]


async def start_front_proxy(parts: Parts) -> None:
    """Start ``chaoskit proxy`` on a free loopback port, as a part the journal records (so
    after a crash the watchdog stops it, once the toxics on it are reverted)."""
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    server = spawn(parts, "front-proxy", argv)
    api = f"http://127.0.0.1:{port}"
    check = ReadyCheck.model_validate({"http": f"{api}/version", "timeout": "20s"})
    await ready(check, parts.render, server.exited, "chaoskit's proxy for targets' ports")
    parts.up.front_url = api


def use_toxiproxy(parts: Parts, url: str) -> None:
    """Offer the proxies of the Toxiproxy API at ``url`` as targets."""
    api = url.rstrip("/")
    parts.up.toxiproxy_url = api
    parts.up.add_source(lambda: _proxies(api))


def use_toxiproxy_servers(parts: Parts, servers: list[ToxiproxyServer]) -> None:
    """Offer the proxies of each named server as targets called ``SERVER/PROXY``, with the
    server's labels."""
    for server in servers:
        api = parts.render(server.url).rstrip("/")
        parts.up.add_source(partial(_proxies, api, server.name, dict(server.labels)))


def _proxies(
    api: str, server: str | None = None, labels: dict[str, str] | None = None
) -> list[Target]:
    named = f"Toxiproxy server {server} ({api})" if server else f"Toxiproxy API at {api}"
    try:
        answer = httpx.get(f"{api}/proxies", timeout=2, trust_env=False)
        listed = answer.json()
    except httpx.HTTPError as error:
        raise BringUpError(f"no {named} answers: {error}") from None
    except ValueError:
        listed = None
    if not isinstance(listed, dict):
        raise BringUpError(
            f"the {named} answers GET /proxies with {answer.status_code}, not with Toxiproxy's "
            "map of proxies: check that the URL is a Toxiproxy API"
        )
    return [
        Target("proxy", f"{server}/{name}" if server else name, dict(labels or {}),
               {"url": api, "proxy": name})
        for name in listed
    ]  # fmt: skip
