"""The system under test (what chaoskit starts) and targets (what faults may hit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..units import Duration, Size
from ._base import (
    Glob,
    Model,
    Name,
    NonNegativeDuration,
    PositiveDuration,
    Template,
    beyond_schema,
    is_set,
    schema_rules,
)

__all__ = [
    "SERVICE_LABEL",
    "ContainerSpec",
    "ContainerTarget",
    "EngineSpec",
    "EngineTls",
    "HostTarget",
    "NodeTarget",
    "ProcessSpec",
    "ProcessTarget",
    "ProxyTarget",
    "ReadyCheck",
    "ServicePort",
    "ServiceRestart",
    "ServiceSpec",
    "ServiceTarget",
    "ServiceUpdate",
    "StackSpec",
    "System",
    "TargetSpec",
    "TmpfsSpec",
    "ToxiproxyServer",
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
    engine: Name | None = None
    """The ``system.engines`` entry to run it on (default: the first, else ``DOCKER_HOST``'s).
    Its ``ports`` are published on that engine's host's loopback."""

    _command = field_validator("command", mode="before")(_argv)


class ServiceRestart(Model):
    """When a service's orchestrator replaces a task that ended (Swarm's restart policy)."""

    condition: Literal["none", "on-failure", "any"] = "any"
    delay: NonNegativeDuration = Duration.parse("5s")
    """How long it waits before starting the replacement."""
    max_attempts: Annotated[int, Field(ge=1)] | None = None
    """How many times it tries in ``window`` (none: without end)."""
    window: NonNegativeDuration | None = None


class ServiceUpdate(Model):
    """How a service's tasks are replaced when the service changes (Swarm's update policy)."""

    parallelism: Annotated[int, Field(ge=0)] = 1
    delay: NonNegativeDuration = Duration(0)
    failure_action: Literal["pause", "continue", "rollback"] = "pause"
    order: Literal["stop-first", "start-first"] = "stop-first"


class ServicePort(Model):
    """A port a service publishes: Swarm publishes it on every address of the node(s), not on
    loopback alone."""

    target: Annotated[int, Field(ge=1, le=65535)]
    """The port inside each task."""
    published: Annotated[int, Field(ge=1, le=65535)]
    mode: Literal["ingress", "host"] = "ingress"
    """``ingress``: Swarm's routing mesh, on every node (needs the kernel's IPVS); ``host``:
    on the node each task runs on (one task per node then)."""


class ServiceSpec(Model):
    """A Docker Swarm service chaoskit creates on a manager (labelled ``chaoskit.run=<run
    id>``), waits for, and removes."""

    name: Name
    image: str = Field(min_length=1)
    """A locally built image on every node that may run it; chaoskit never pulls."""
    command: list[Template] | None = None
    """Arguments to the image's entrypoint."""
    env: dict[str, Template] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    ports: list[ServicePort] = Field(default_factory=list)
    """Each published port once."""
    restart: ServiceRestart = Field(default_factory=ServiceRestart)
    update: ServiceUpdate = Field(default_factory=ServiceUpdate)
    engine: Name | None = None
    """The ``system.engines`` entry, a manager of the swarm (default: the first, else
    ``DOCKER_HOST``'s)."""
    ready_timeout: PositiveDuration = Duration.parse("120s")
    """How long all ``replicas`` have to be running before the run is refused."""

    _command = field_validator("command", mode="before")(_argv)

    @field_validator("ports")
    @classmethod
    def _published_once(cls, value: list[ServicePort]) -> list[ServicePort]:
        published = [p.published for p in value]
        twice = sorted({p for p in published if published.count(p) > 1})
        if twice:
            raise beyond_schema(f"each port is published once: {', '.join(map(str, twice))}")
        return value


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


class EngineTls(Model):
    """TLS for a ``tcp://`` engine: the CA that signed its certificate, and this client's."""

    ca: str | None = None
    """The CA certificate (PEM file) the engine's certificate must chain to."""
    cert: str | None = None
    """This client's certificate (PEM file), for an engine started with ``--tlsverify``."""
    key: str | None = None
    """The key of ``cert`` (PEM file)."""
    verify: bool = True
    """Check the engine's certificate (against ``ca``, else the system's CAs)."""

    @model_validator(mode="after")
    def _pair(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both 'cert' and 'key'")
        return self


class EngineSpec(Model):
    """A Docker engine the experiment reaches, by name: its containers are targets."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {"properties": {"host": {"pattern": "^(unix|tcp|ssh)://"}}},
            {"if": is_set("tls"), "then": {"properties": {"host": {"pattern": "^tcp://"}}}},
        )
    )

    name: Name
    host: Template = Field(pattern=r"^(unix|tcp|ssh)://")
    """Where it listens, as ``DOCKER_HOST`` says it: ``unix:///var/run/docker.sock``,
    ``tcp://10.0.0.2:2376`` or ``ssh://user@host``."""
    tls: EngineTls | None = None
    """For ``tcp://``: the engine's CA and this client's certificate."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels every container on it carries as a target, e.g. ``host: h1``, ``zone: a``, over
    the container's own of the same name."""

    @model_validator(mode="after")
    def _tls_over_tcp(self) -> Self:
        if self.tls is not None and not self.host.startswith("tcp://"):
            raise ValueError(f"'tls' is for a tcp:// engine; '{self.host}' is not one")
        if self.host.startswith(("tcp://", "ssh://")) and "${" not in self.host:
            try:
                parts = urlsplit(self.host)
                parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            except ValueError as error:
                raise ValueError(f"'{self.host}' is not a Docker host: {error}") from None
            if not parts.hostname:
                raise ValueError(f"'{self.host}' names no machine, e.g. tcp://10.0.0.2:2376")
        return self


class ToxiproxyServer(Model):
    """A Toxiproxy API server the experiment reaches, by name: its proxies are targets."""

    name: Name
    url: Template
    """Its API, e.g. ``http://10.0.0.2:8474``."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels every proxy on it carries as a target, e.g. ``host: h1``, ``zone: a``."""


class System(Model):
    """What chaoskit brings up before the run and takes down after it."""

    stack: StackSpec | None = None
    """The reference stack: ``stack: demo`` or ``stack: {replicas: 3, mode: container}``."""
    processes: list[ProcessSpec] = Field(default_factory=list)
    containers: list[ContainerSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
    """Docker Swarm services, on an engine that manages a swarm."""
    ports: list[Name] = Field(default_factory=list)
    """Free loopback ports to pick at run time, used as ``${ports.NAME}``."""
    toxiproxy: Template | None = None
    """A Toxiproxy API URL to use instead of the embedded one (default ``$TOXIPROXY_URL``)."""
    engines: list[EngineSpec] = Field(default_factory=list)
    """Docker engines by name (default: the one ``DOCKER_HOST`` names, or the local socket).
    With any named, a container target is called ``ENGINE/CONTAINER``."""
    toxiproxies: list[ToxiproxyServer] = Field(default_factory=list)
    """Toxiproxy servers by name, besides ``toxiproxy``; their proxies are called
    ``SERVER/PROXY``."""

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
        names += [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise beyond_schema(
                f"process, container and service names must be unique: {', '.join(dupes)}"
            )
        ports = self.port_names()
        dupes = sorted({n for n in ports if ports.count(n) > 1})
        if dupes:
            raise beyond_schema(f"port names must be unique: {', '.join(dupes)}")
        for field, named in (("engines", self.engines), ("toxiproxies", self.toxiproxies)):
            names = [e.name for e in named]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise beyond_schema(f"names in system.{field} must be unique: {', '.join(dupes)}")
        engines = {e.name: e for e in self.engines}
        placed: list[tuple[str, Sequence[ContainerSpec | ServiceSpec]]] = [
            ("containers", self.containers),
            ("services", self.services),
        ]
        for field, parts in placed:
            for index, part in enumerate(parts):
                if part.engine is not None and part.engine not in engines:
                    known = ", ".join(sorted(engines)) or "none: add it to system.engines"
                    raise beyond_schema(
                        f"system.{field}[{index}] ('{part.name}') is for engine "
                        f"'{part.engine}', which system.engines does not name (named: {known})"
                    )
        for index, container in enumerate(self.containers):
            on = engines.get(container.engine) if container.engine else None
            on = on or (self.engines[0] if self.engines else None)
            if container.faketime and on is not None and not on.host.startswith("unix://"):
                raise beyond_schema(
                    f"system.containers[{index}] ('{container.name}'): faketime needs an engine "
                    f"on this machine (its clock file is here), and engine '{on.name}' is at "
                    f"{on.host}: run it on a unix:// engine, or drop clock_skew"
                )
        return self

    def port_names(self) -> list[str]:
        """Every name ``${ports.NAME}`` may use in this experiment."""
        names = list(self.ports)
        if self.stack is not None:
            names += self.stack.port_names()
        for container in self.containers:
            names += list(container.ports)
        return names


def _listed(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


class _TargetBase(Model):
    select: Glob | list[Glob] | None = None
    """Name pattern(s), e.g. ``backend-*``."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels a target must carry (all of them)."""

    def patterns(self) -> list[str]:
        """The name patterns as a list."""
        return _listed(self.select)

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if a thing called ``name`` with ``labels`` is selected: any name pattern (or
        none given) and every label. A name on a named engine or server (``east/web-1``)
        matches a pattern as it is and without its prefix (``web-*``), and the engine or
        server must be one :meth:`places` selects."""
        place, _, bare = name.rpartition("/")
        patterns = self.patterns()
        named = not patterns or any(
            fnmatchcase(name, p) or (place and fnmatchcase(bare, p)) for p in patterns
        )
        return (
            named
            and self.in_place(place)
            and all(labels.get(k) == v for k, v in self.labels.items())
        )

    def places(self) -> list[str]:
        """The engine or server name patterns (none: any)."""
        return []

    def in_place(self, place: str) -> bool:
        """Whether a thing on the engine or server ``place`` ('' : the unnamed one) may be
        selected."""
        wanted = self.places()
        return not wanted or any(fnmatchcase(place, p) for p in wanted)


class ProxyTarget(_TargetBase):
    """Toxiproxy proxies, selected by name (and by their server's name and labels)."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            is_set("select"), {"properties": {"select": {"minItems": 1}}}
        )
    )

    kind: Literal["proxy"]
    server: Glob | list[Glob] | None = None
    """Only proxies on these ``system.toxiproxies`` servers (name patterns)."""

    def places(self) -> list[str]:
        """The server name patterns (none: any)."""
        return _listed(self.server)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.patterns():
            raise ValueError("a proxy target needs 'select', e.g. select: 'backend-*'")
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


class _ByNameOrLabels(_TargetBase):
    """A kind of target chosen by name pattern and/or labels, at least one of them."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {"anyOf": [is_set("select"), is_set("labels", "map")]},
            {"properties": {"select": {"minItems": 1}}},
        )
    )
    NEEDS: ClassVar[str] = "needs 'select' or 'labels'"
    """The refusal of one with neither (after ``a <kind> target``)."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not (self.patterns() or self.labels):
            raise ValueError(f"a {getattr(self, 'kind', '?')} target {self.NEEDS}")
        return self


class _OnEngines(_ByNameOrLabels):
    """A kind of target found on the experiment's Docker engines."""

    engine: Glob | list[Glob] | None = None
    """Only those on these ``system.engines`` engines (name patterns)."""

    def places(self) -> list[str]:
        """The engine name patterns (none: any)."""
        return _listed(self.engine)


class ContainerTarget(_OnEngines):
    """Containers, by name pattern and/or labels."""

    kind: Literal["container"]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """For network faults: the container port chaoskit puts a proxy in front of."""
    listen: Name | dict[Name, Name] | None = None
    """For network faults: the system port (a ``system.ports`` name) chaoskit's proxy listens
    on; clients reach the container through ``${ports.NAME}``. A mapping from each container's
    name to a port name when the target selects several."""


class HostTarget(_ByNameOrLabels):
    """Hosts, by name pattern and/or labels (``zone``). A host is a value of the ``host``
    label, which the engines and Toxiproxy servers under ``system:`` give everything on them
    and processes may carry; what runs there is every proxy of its servers and every process
    and container the run started there."""

    NEEDS: ClassVar[str] = "needs 'select' (host names) or 'labels'"

    kind: Literal["host"]


SERVICE_LABEL = "com.docker.swarm.service.name"
"""The label a Swarm task carries with its service's name (as Docker labels its container)."""


class ServiceTarget(_OnEngines):
    """The running tasks of Docker Swarm services, by service name and/or labels (a service's
    own, its node's and its engine's): each task is one target (``web.2``), hit through its
    container on the node it runs on, whose engine ``engine`` matches."""

    NEEDS: ClassVar[str] = "needs 'select' (service names) or 'labels'"

    kind: Literal["service"]

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        """True if the task called ``name`` (``[ENGINE/]SERVICE.SLOT``) is of a selected
        service, by the service's name (``web`` selects ``web.1`` and ``web.2``), as its
        :data:`SERVICE_LABEL` says (a global service's task is named after its node, whose
        hostname may hold dots)."""
        place, _, task = name.rpartition("/")
        service = labels.get(SERVICE_LABEL) or task.rpartition(".")[0] or task
        return super().selects(f"{place}/{service}" if place else service, labels)


class NodeTarget(_OnEngines):
    """Docker Swarm nodes, by hostname and/or labels (the node's and its engine's); ``engine``
    matches the engine that is the node, else the manager it is listed through."""

    NEEDS: ClassVar[str] = "needs 'select' (hostnames) or 'labels'"

    kind: Literal["node"]


TargetSpec = Annotated[
    ProxyTarget | ProcessTarget | ContainerTarget | HostTarget | ServiceTarget | NodeTarget,
    Field(discriminator="kind"),
]
"""A named group of things faults may hit, chosen by ``kind`` (``targets:`` in an experiment;
the concrete things it selects at run time are ``drivers.base.Target``)."""
