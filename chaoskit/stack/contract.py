"""The reference stack as seen from outside, written once: what ``chaoskit stack up`` promises
anyone who starts it (the runner does, as a process it never imports otherwise).

- its **ports file**: JSON naming each port (for ``${ports.NAME}``) and its data root, written
  atomically once everything is ready (:func:`write_ports`, :func:`read_ports`);
- in container mode, the **label** on its containers and network, valued with the frontend's
  port, so that the containers of one stack can be listed (:data:`LABEL`);
- in process mode, the supervisor's **status** (``GET /status``): each backend's name and pid
  (:class:`ReplicaStatus`, :func:`replica_pids`).

Plain data only (json, pathlib): importing it loads nothing of the stack's services.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "LABEL",
    "PortsFile",
    "ReplicaStatus",
    "Status",
    "read_ports",
    "replica_pids",
    "write_ports",
]

LABEL = "chaoskit.stack"
"""The label on a container-mode stack's containers and network; its value is the frontend's
port, which tells two stacks on one engine apart."""


@dataclass(frozen=True)
class PortsFile:
    """What the ports file says: each port by name, and where the backends keep their data."""

    ports: dict[str, int]
    data_root: Path


def write_ports(path: Path, ports: dict[str, int], data_root: Path) -> None:
    """Write the ports file atomically: whoever waits for it never reads half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"ports": ports, "data_root": str(data_root)}))
    tmp.replace(path)


def read_ports(path: Path) -> PortsFile:
    """The ports file at ``path`` (once it exists)."""
    described = json.loads(path.read_text())
    ports = {str(name): int(port) for name, port in described["ports"].items()}
    return PortsFile(ports, Path(described["data_root"]))


class ReplicaStatus(TypedDict):
    """One backend in the supervisor's ``/status``."""

    name: str
    pid: int | None
    """None while it is restarting."""
    state: str
    ready: bool
    restarts: int


class Status(TypedDict):
    """The supervisor's ``/status``."""

    replicas: list[ReplicaStatus]
    ready: int


def replica_pids(status: Any) -> list[tuple[str, int]]:
    """Each running backend's name and pid, from a ``/status`` answer."""
    return [(r["name"], int(r["pid"])) for r in status["replicas"] if r["pid"] is not None]
