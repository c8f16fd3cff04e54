"""The system under test (what chaoskit starts) and targets (what faults may hit)."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..units import Duration, Size
from ._base import (
    Glob,
    Model,
    Name,
    PositiveDuration,
    Template,
    beyond_schema,
    is_set,
    schema_rules,
)

__all__ = [
    "ContainerSpec",
    "ContainerTarget",
    "ProcessSpec",
    "ProcessTarget",
    "ProxyTarget",
    "ReadyCheck",
    "StackSpec",
    "System",
    "TargetSpec",
    "TmpfsSpec",
]


class ReadyCheck(Model):
    """How to know a started process or container is ready: an HTTP answer or an open port."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules({"oneOf": [is_set("http"), is_set("tcp")]})
    )

    http: Template | None = None
    """A URL that must answer 2xx, e.g. ``http://127.0.0.1:${ports.api}/health/ready``."""
    tcp: Template | None = None
    """A ``host:port`` that must accept connections."""
    timeout: Duration = Duration.parse("30s")

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("a ready check needs exactly one of 'http' or 'tcp'")
        return self


class TmpfsSpec(Model):
    """A size-capped tmpfs at ``path``, so that ``disk_full`` never touches a real disk."""

    path: str = Field(pattern=r"^/")
    """Absolute path inside the process's mount namespace or the container."""
    size: Size
    """Capacity, e.g. ``64MiB``."""

    @field_validator("size")
    @classmethod
    def _positive(cls, value: Size) -> Size:
        if value.bytes < 4096:
            raise beyond_schema(f"a tmpfs needs at least 4KiB, got '{value}'")
        return value


def _argv(value: object) -> object:
    if isinstance(value, str):
        raise ValueError(
            "a command is a list of arguments, not a shell string: write "
            f"{value.split()!r} (chaoskit never runs a shell)"
        )
    return value


class ProcessSpec(Model):
    """A local process chaoskit starts, watches and stops."""

    name: Name
    command: list[Template] = Field(min_length=1)
    """The program and its arguments as a list (never a shell string)."""
    env: dict[str, Template] = Field(default_factory=dict)
    cwd: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels targets can select on."""
    ready: ReadyCheck | None = None
    tmpfs: TmpfsSpec | None = None
    """Start it in its own mount namespace with a tmpfs here (needed for ``disk_full``)."""
    faketime: bool = False
    """Start it under libfaketime (needed for ``clock_skew``)."""

    _command = field_validator("command", mode="before")(_argv)


class ContainerSpec(Model):
    """A container chaoskit creates (labelled ``chaoskit.run=<run id>``) and removes."""

    name: Name
    image: str = Field(min_length=1)
    """A locally built image; chaoskit never pulls from a registry."""
    command: list[Template] | None = None
    env: dict[str, Template] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    networks: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    """Network aliases on every network the container joins."""
    ports: dict[Name, Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=dict)
    """Container ports published on 127.0.0.1, by the name used in ``${ports.NAME}``."""
    ready: ReadyCheck | None = None
    tmpfs: TmpfsSpec | None = None
    faketime: bool = False
    restart: Literal["no", "on-failure", "always", "unless-stopped"] = "no"

    _command = field_validator("command", mode="before")(_argv)


class StackSpec(Model):
    """The reference self-healing stack (supervisor, backends, proxies, frontend)."""

    name: Literal["demo"] = "demo"
    replicas: int = Field(default=3, ge=1, le=16)
    """Backend replicas behind the frontend."""
    mode: Literal["process", "container"] = "process"
    tmpfs: Size | None = None
    """Give each backend a size-capped tmpfs for its data (needed for ``disk_full``)."""
    faketime: bool = False
    """Start each backend under libfaketime (needed for ``clock_skew``)."""
    ready_timeout: PositiveDuration = Duration.parse("120s")
    """How long the stack gets to answer; a loaded machine starts Python slowly."""

    def backend_names(self) -> list[str]:
        """The backends' process or container names: ``backend-1`` … ``backend-N``."""
        return [f"backend-{i}" for i in range(1, self.replicas + 1)]

    def port_names(self) -> list[str]:
        """The ``${ports.NAME}`` names the stack provides."""
        if self.mode == "container":  # Docker's restart policy supervises; no proxies in between
            return ["frontend", *self.backend_names()]
        return ["frontend", "supervisor", "toxiproxy", *self.backend_names()]


class System(Model):
    """What chaoskit brings up before the run and takes down after it."""

    stack: StackSpec | None = None
    """The reference stack: ``stack: demo`` or ``stack: {replicas: 3, mode: container}``."""
    processes: list[ProcessSpec] = Field(default_factory=list)
    containers: list[ContainerSpec] = Field(default_factory=list)
    ports: list[Name] = Field(default_factory=list)
    """Free loopback ports to pick at run time, used as ``${ports.NAME}``."""
    toxiproxy: Template | None = None
    """A Toxiproxy API URL to use instead of the embedded one (default ``$TOXIPROXY_URL``)."""

    @field_validator(
        "stack", mode="before", json_schema_input_type=Literal["demo"] | StackSpec | None
    )
    @classmethod
    def _stack_shorthand(cls, value: object) -> object:
        if value == "demo":
            return {"name": "demo"}
        return value

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [p.name for p in self.processes] + [c.name for c in self.containers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise beyond_schema(f"process and container names must be unique: {', '.join(dupes)}")
        ports = self.port_names()
        dupes = sorted({n for n in ports if ports.count(n) > 1})
        if dupes:
            raise beyond_schema(f"port names must be unique: {', '.join(dupes)}")
        return self

    def port_names(self) -> list[str]:
        """Every name ``${ports.NAME}`` may use in this experiment."""
        names = list(self.ports)
        if self.stack is not None:
            names += self.stack.port_names()
        for container in self.containers:
            names += list(container.ports)
        return names


class _TargetBase(Model):
    select: Glob | list[Glob] | None = None
    """Name pattern(s), e.g. ``backend-*``."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels a target must carry (all of them)."""

    def patterns(self) -> list[str]:
        """The name patterns as a list."""
        if self.select is None:
            return []
        return [self.select] if isinstance(self.select, str) else list(self.select)

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if a thing called ``name`` with ``labels`` is selected: any name pattern (or
        none given) and every label."""
        patterns = self.patterns()
        return (not patterns or any(fnmatchcase(name, p) for p in patterns)) and all(
            labels.get(k) == v for k, v in self.labels.items()
        )


class ProxyTarget(_TargetBase):
    """Toxiproxy proxies, selected by name."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            is_set("select"),
            {"properties": {"select": {"minItems": 1}, "labels": {"maxProperties": 0}}},
        )
    )

    kind: Literal["proxy"]

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.patterns():
            raise ValueError("a proxy target needs 'select', e.g. select: 'backend-*'")
        if self.labels:
            raise ValueError("proxies have no labels: select them by name")
        return self


PortRef = Annotated[int, Field(ge=1, le=65535)] | Name
"""A port: a number, or the name of one of the system's ports."""


class ProcessTarget(_TargetBase):
    """Local processes chaoskit started (by name or labels) or given by pid."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {"anyOf": [is_set("select"), is_set("labels", "map"), is_set("pids", "list")]},
            {"properties": {"select": {"minItems": 1}, "port": {"minProperties": 1}}},
        )
    )

    kind: Literal["process"]
    pids: list[Annotated[int, Field(gt=1)]] = Field(default_factory=list)
    """Explicit process ids of processes chaoskit did not start (crash and pause only)."""
    port: PortRef | dict[Name, PortRef] | None = None
    """For network faults: the port chaoskit puts a proxy in front of, a number or the name of
    one of the system's ports (``api`` for ``${ports.api}``). A mapping from each process's
    name to its port when the target selects several (processes on loopback cannot share
    one)."""
    listen: Name | dict[Name, Name] | None = None
    """For network faults: the system port (a ``system.ports`` name) chaoskit's proxy listens
    on; clients reach the target through ``${ports.NAME}``. A mapping from each process's
    name to a port name when the target selects several."""

    @field_validator("port")
    @classmethod
    def _some_port(cls, value: object) -> object:
        if value == {}:
            raise ValueError("a port mapping needs a port for each process: it maps none")
        return value

    def port_of(self, name: str) -> int | str | None:
        """The port a proxy in front of process ``name`` relays to (None: not given)."""
        if isinstance(self.port, dict):
            return self.port.get(name)
        return self.port

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.patterns() or self.labels or self.pids):
            raise ValueError("a process target needs 'select', 'labels' or 'pids'")
        return self


class ContainerTarget(_TargetBase):
    """Containers, by name pattern and/or labels."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {"anyOf": [is_set("select"), is_set("labels", "map")]},
            {"properties": {"select": {"minItems": 1}}},
        )
    )

    kind: Literal["container"]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """For network faults: the container port chaoskit puts a proxy in front of."""
    listen: Name | dict[Name, Name] | None = None
    """For network faults: the system port (a ``system.ports`` name) chaoskit's proxy listens
    on; clients reach the container through ``${ports.NAME}``. A mapping from each container's
    name to a port name when the target selects several."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.patterns() or self.labels):
            raise ValueError("a container target needs 'select' or 'labels'")
        return self


TargetSpec = Annotated[ProxyTarget | ProcessTarget | ContainerTarget, Field(discriminator="kind")]
"""A named group of things faults may hit, chosen by ``kind`` (``targets:`` in an experiment;
the concrete things it selects at run time are ``drivers.base.Target``)."""
