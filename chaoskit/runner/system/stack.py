"""The reference stack as a part: ``chaoskit stack up`` started as a process (never imported),
read through its contract (``stack/contract.py``: ports file, container label, ``/status``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ...drivers.base import Target
from ...drivers.process import process_target
from ...model.system import StackSpec
from ...stack import contract
from ..errors import BringUpError
from .parts import Parts, tail
from .spawn import spawn

__all__ = ["start_stack"]


async def start_stack(parts: Parts, spec: StackSpec) -> None:
    """Start the stack, wait for its ports file, and offer its backends and proxies (process
    mode) or its containers as targets."""
    ports_file = parts.run_dir / "stack-ports.json"
    argv = [
        sys.executable, "-m", "chaoskit", "stack", "up", "--replicas", str(spec.replicas),
        "--mode", spec.mode, "--ports-file", str(ports_file),
        "--data-root", str(parts.run_dir / "stack-data"),
    ]  # fmt: skip
    argv += ["--ready-timeout", f"{spec.ready_timeout.seconds}s"]
    if spec.tmpfs is not None:
        argv += ["--tmpfs", str(spec.tmpfs.bytes)]
    faketime = parts.run_dir / "faketime" if spec.faketime else None
    if faketime is not None:
        argv += ["--faketime", str(faketime)]
    stack = spawn(parts, "stack", argv, grace=30.0)
    # `stack up` keeps the ready timeout itself and exits when it passes; this outer bound
    # only catches a stack that hangs before it starts counting (a container image build).
    grace = 300.0 if spec.mode == "container" else 30.0
    deadline = time.monotonic() + spec.ready_timeout.seconds + grace
    while not ports_file.exists():
        exited = stack.exited()
        if exited is not None:
            raise BringUpError(f"the reference stack {exited}")
        if time.monotonic() > deadline:
            raise BringUpError(f"the reference stack did not come up in time:\n{tail(stack.log)}")
        await asyncio.sleep(0.1)
    described = contract.read_ports(ports_file)
    parts.up.ports.update(described.ports)
    if spec.mode == "process":
        _offer_processes(parts, spec, described, faketime)
    else:
        _offer_containers(parts, spec, described, faketime)


def _offer_processes(
    parts: Parts, spec: StackSpec, described: contract.PortsFile, faketime: Path | None
) -> None:
    ports = described.ports
    api = f"http://127.0.0.1:{ports['toxiproxy']}"
    parts.up.toxiproxy_url = api
    supervisor = f"http://127.0.0.1:{ports['supervisor']}/status"

    def backends() -> list[Target]:
        status = httpx.get(supervisor, timeout=2, trust_env=False).json()
        found = []
        for name, pid in contract.replica_pids(status):
            with contextlib.suppress(Exception):  # gone meanwhile: not a target now
                found.append(
                    process_target(
                        pid,
                        name,
                        {"role": "backend"},
                        tmpfs=str(described.data_root / name) if spec.tmpfs else None,
                        faketime=str(faketime / name) if faketime else None,
                    )
                )
        return found

    def proxies() -> list[Target]:
        listed = httpx.get(f"{api}/proxies", timeout=2, trust_env=False).json()
        return [Target("proxy", name, {}, {"url": api, "proxy": name}) for name in listed]

    parts.up.add_source(backends)
    parts.up.add_source(proxies)


def _offer_containers(
    parts: Parts, spec: StackSpec, described: contract.PortsFile, faketime: Path | None
) -> None:
    names = spec.backend_names()
    label = f"{contract.LABEL}={described.ports['frontend']}"

    def containers() -> list[Target]:
        import docker  # noqa: PLC0415 - only with a container-mode stack

        client = docker.from_env()
        try:
            found = []
            for container in client.containers.list(all=True, filters={"label": label}):
                ref: dict[str, Any] = {"id": container.id, "tmpfs": "/data"}
                if faketime is not None and container.name in names:
                    ref["faketime"] = str(faketime / container.name)
                role = "backend" if container.name in names else "frontend"
                found.append(Target("container", container.name, {"role": role}, ref))
            return found
        finally:
            client.close()

    parts.up.add_source(containers)
