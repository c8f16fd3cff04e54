"""Faults: what chaoskit breaks, one model per ``type``, each with its own attributes."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal, Self, cast

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from ..plugins import Loaded
from ..units import Bandwidth, Duration, Percent, Size
from ._base import (
    Model,
    Name,
    NonNegativeDuration,
    PositiveDuration,
    beyond_schema,
    is_set,
    schema_rules,
    type_of,
    typed_plugins,
)

__all__ = [
    "BandwidthFault",
    "ClockSkewFault",
    "CrashFault",
    "DiskFullFault",
    "DrainFault",
    "Fault",
    "FaultBase",
    "FaultType",
    "HostDownFault",
    "LatencyFault",
    "LimitDataFault",
    "PartitionFault",
    "PauseFault",
    "RemoveFault",
    "ResetPeerFault",
    "SlicerFault",
    "SlowCloseFault",
    "TargetKind",
    "TimeoutFault",
    "fault_plugins",
    "fault_types",
]

TargetKind = Literal["proxy", "process", "container", "host", "service", "node"]


class FaultBase(Model):
    """Fields every fault has: where, when and for how long; and how it is applied, so that
    the runner needs no list of fault types (see :meth:`driver`)."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"proxy", "process", "container"})
    """Target kinds this fault can be declared on."""
    DRIVERS: ClassVar[Mapping[str, str]] = {}
    """The driver (by name) that applies this fault to a target of each kind; a fault
    :attr:`on_proxy` is applied to a proxy, the one placed before a process or container."""
    LAUNCH_NEEDS: ClassVar[frozenset[str]] = frozenset()
    """How the target must have been started for this fault to reach it: ``tmpfs`` (in a
    sandbox with a size-capped tmpfs), ``faketime`` (under libfaketime). A fault that needs
    something, or is applied on a proxy, cannot hit a process given only by its pid."""

    name: Name | None = None
    """A name for reports and the journal; defaults to ``<type>-<position>``."""
    target: Name
    """The key of an entry under ``targets:``."""
    at: NonNegativeDuration = Duration(0)
    """When to inject, as an offset from the start of the fault phase."""
    duration: PositiveDuration | None = None
    """How long the fault stays; by default until the fault phase ends."""
    description: str = ""

    @property
    def on_proxy(self) -> bool:
        """Whether this fault is applied on a proxy: on a process or container, the proxy
        chaoskit places in front of its port."""
        return set(self.DRIVERS) == {"proxy"}

    def driver(self, kind: str) -> str | None:
        """The name of the driver that applies this fault to a target of ``kind`` (after a
        fault :attr:`on_proxy` is moved to its proxy), or None if none can."""
        return self.DRIVERS.get(kind)

    def on_host(self, kind: str) -> Fault | None:
        """For a fault declared on a ``host`` target: the fault each thing of ``kind``
        (``proxy``, ``process``, ``container``) running on the drawn host gets, or None to
        leave things of that kind alone; raises ValueError, saying why, when a thing of that
        kind must not be left alone and cannot be hit. Only faults with ``host`` in
        :attr:`KINDS` need it."""
        return None


class _Toxic(FaultBase):
    """A Toxiproxy toxic: on a proxy, or a proxy chaoskit places in front of a target's port."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"proxy", "process", "container", "host"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"proxy": "toxiproxy"}

    stream: Literal["downstream", "upstream", "both"] = "downstream"
    """Which direction: ``downstream`` (server to client), ``upstream``, or ``both``."""
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of connections affected, 0 to 1 (Toxiproxy rolls it per connection)."""

    def on_host(self, kind: str) -> Fault | None:
        """On a host: the same toxic on every proxy of its Toxiproxy servers."""
        return cast("Fault", self) if kind == "proxy" else None


class LatencyFault(_Toxic):
    """Delay every chunk of data by ``latency`` ± ``jitter``."""

    type: Literal["latency"]
    latency: NonNegativeDuration
    """Added delay per chunk, e.g. ``300ms``."""
    jitter: NonNegativeDuration = Duration(0)
    """Uniform spread around the delay, e.g. ``50ms``."""


class BandwidthFault(_Toxic):
    """Limit each connection to ``rate`` in the chosen direction."""

    type: Literal["bandwidth"]
    rate: Bandwidth
    """Bytes per second per connection, e.g. ``100kB/s``; must be above zero."""

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: Bandwidth) -> Bandwidth:
        if value.bytes_per_second <= 0:
            raise beyond_schema(
                "bandwidth 'rate' must be above zero; to stop traffic use a partition"
            )
        if value.bytes_per_second < 1000:
            raise beyond_schema(
                f"bandwidth 'rate' {value} is below 1kB/s, the smallest rate Toxiproxy can apply"
            )
        return value


class SlowCloseFault(_Toxic):
    """Delay the close of each connection by ``delay``."""

    type: Literal["slow_close"]
    delay: NonNegativeDuration


class TimeoutFault(_Toxic):
    """Stop all data; close the connection after ``timeout`` of silence (0s: never close)."""

    type: Literal["timeout"]
    timeout: NonNegativeDuration = Duration(0)


class ResetPeerFault(_Toxic):
    """Reset connections (TCP RST) after ``timeout``."""

    type: Literal["reset_peer"]
    timeout: NonNegativeDuration = Duration(0)


class SlicerFault(_Toxic):
    """Cut data into small pieces of about ``average_size``, ``delay`` apart."""

    type: Literal["slicer"]
    average_size: Size
    """Mean piece size; must be above zero."""
    size_variation: Size = Size(0)
    """How far a piece may differ from the mean; must be below ``average_size``."""
    delay: NonNegativeDuration = Duration(0)
    """Pause between pieces (Toxiproxy's resolution is one microsecond)."""

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.average_size.bytes <= 0:
            raise beyond_schema("slicer 'average_size' must be above zero")
        if self.size_variation >= self.average_size:
            raise beyond_schema(
                f"slicer 'size_variation' ({self.size_variation}) must be below "
                f"'average_size' ({self.average_size})"
            )
        return self


class LimitDataFault(_Toxic):
    """Close each connection once ``bytes`` have passed."""

    type: Literal["limit_data"]
    bytes: Size


class PartitionFault(FaultBase):
    """Cut a target off the network: hang its connections, refuse them, or disconnect it."""

    type: Literal["partition"]
    mode: Literal["hang", "refuse", "disconnect"] = "hang"
    """``hang``: connections stall (Toxiproxy timeout toxic), closest to a real partition;
    ``refuse``: connections are refused (proxy disabled); ``disconnect``: the container leaves
    its Docker network and rejoins with the same aliases and address."""
    direction: Literal["both", "inbound", "outbound"] = "both"
    """One-way partitions where the mechanism allows it (``hang`` only)."""
    network: str | None = None
    """For ``disconnect``: the Docker network; by default every network of the container."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"proxy", "process", "container", "host"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"proxy": "toxiproxy", "container": "docker"}

    @property
    def on_proxy(self) -> bool:
        """``hang`` and ``refuse`` are applied on a proxy; ``disconnect`` on the container."""
        return self.mode != "disconnect"

    def on_host(self, kind: str) -> Fault | None:
        """A host partition: ``hang`` and ``refuse`` on every proxy of the host's Toxiproxy
        servers (the links into the host), ``disconnect`` on every container the run started
        there."""
        wanted = "proxy" if self.on_proxy else "container"
        return self if kind == wanted else None

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {
                "if": {
                    "required": ["direction"],
                    "properties": {"direction": {"not": {"enum": ["both", None]}}},
                },
                "then": {"properties": {"mode": {"const": "hang"}}},
            },
            {
                "if": is_set("network"),
                "then": {"required": ["mode"], "properties": {"mode": {"const": "disconnect"}}},
            },
        )
    )

    @model_validator(mode="after")
    def _direction(self) -> Self:
        if self.direction != "both" and self.mode != "hang":
            raise ValueError(
                f"a one-way partition (direction '{self.direction}') needs mode 'hang': "
                f"'{self.mode}' always cuts both directions"
            )
        if self.network is not None and self.mode != "disconnect":
            raise ValueError("'network' only applies to mode 'disconnect'")
        return self


_SIGNALS = {s.name for s in signal.Signals if s.name.startswith("SIG") and "_" not in s.name}


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


_SIGNAL_PATTERN = (
    rf"^\s*(?:{_any_case('SIG')})?(?:{'|'.join(_any_case(s[3:]) for s in sorted(_SIGNALS))})\s*$"
)
"""The signal names :class:`CrashFault` accepts, as a JSON Schema pattern (no inline flags in
ECMA-262 expressions, hence each letter in both cases)."""


class CrashFault(FaultBase):
    """Crash a process with a signal, or kill, stop or restart a container; kill or stop a
    Swarm service's task (its orchestrator starts a new one)."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"process", "container", "service"})
    DRIVERS: ClassVar[Mapping[str, str]] = {
        "process": "process",
        "container": "docker",
        "service": "swarm",
    }

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {
                "if": {"required": ["keep_down"], "properties": {"keep_down": {"const": True}}},
                "then": {"properties": {"action": {"const": "kill"}}},
            }
        )
    )

    type: Literal["crash"]
    signal: Annotated[str, WithJsonSchema({"type": "string", "pattern": _SIGNAL_PATTERN})] = (
        "SIGKILL"
    )
    """Any signal name (``SIGKILL``, ``TERM``, ``SIGSEGV``), in any case."""
    action: Literal["kill", "stop", "restart"] = "kill"
    """For containers: ``kill`` sends ``signal``, ``stop`` stops gracefully, ``restart`` both."""
    keep_down: bool = False
    """For a container killed: keep it down until the fault is taken back, then start it. The
    engine kills it (as ``docker kill``), which its restart policy counts as a manual stop;
    without it, the kill comes from the host, like a real crash, and the restart policy
    applies."""

    @model_validator(mode="after")
    def _keep_down(self) -> Self:
        if self.keep_down and self.action != "kill":
            raise ValueError("'keep_down' goes with action 'kill' (a stop keeps it down anyway)")
        return self

    @field_validator("signal")
    @classmethod
    def _real_signal(cls, value: str) -> str:
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in _SIGNALS:
            raise ValueError(
                f"'{value}' is not a signal name: use one of {', '.join(sorted(_SIGNALS))}"
            )
        return name


class PauseFault(FaultBase):
    """Freeze a process (SIGSTOP, then SIGCONT), a container or a Swarm task's container
    (docker pause)."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"process", "container", "service"})
    DRIVERS: ClassVar[Mapping[str, str]] = {
        "process": "process",
        "container": "docker",
        "service": "swarm",
    }

    type: Literal["pause"]


class RemoveFault(FaultBase):
    """Remove a Swarm service task's container outright (``docker rm -f``): the task fails and
    the orchestrator must schedule another."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"service"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"service": "swarm"}

    type: Literal["remove"]


class DrainFault(FaultBase):
    """Drain a Swarm node: the orchestrator moves its tasks elsewhere (or leaves them pending
    when no node is left); taken back, the node gets its earlier availability again."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"node"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"node": "swarm"}

    type: Literal["drain"]


class HostDownFault(FaultBase):
    """Take a whole host down, then bring it back: everything chaoskit runs there at once."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"host"})

    type: Literal["host_down"]
    mode: Literal["power_off", "freeze"] = "power_off"
    """``power_off``: the host's containers are killed (SIGKILL, kept down whatever their
    restart policy) and started again when the fault is taken back, as after a power cut and
    a boot; a process chaoskit cannot start
    again, so a host running one is refused. ``freeze``: its containers are paused and its
    processes stopped (SIGSTOP), then resumed, as a hung machine or a paused VM. In both
    modes every proxy of the host's Toxiproxy servers hangs its connections: peers see a host
    that stopped answering, not one that refuses."""

    def on_host(self, kind: str) -> Fault | None:
        """The fault each thing on the host gets (see :attr:`mode`)."""
        common = {"name": self.name, "target": self.target, "description": self.description}
        if kind == "proxy":
            return PartitionFault(type="partition", mode="hang", **common)
        if kind == "container" and self.mode == "power_off":
            return CrashFault(type="crash", keep_down=True, **common)
        if kind == "process" and self.mode == "power_off":
            raise ValueError(
                "a power_off kills everything on the host and starts it again when the fault "
                "is taken back, and chaoskit cannot start a process again from its journal: "
                "use mode 'freeze', or run the process in a container on the host's engine"
            )
        if kind in ("container", "process"):
            return PauseFault(type="pause", **common)
        return None


class DiskFullFault(FaultBase):
    """Fill the target's data tmpfs so that only ``leave`` bytes or ``free`` percent remain.

    Never touches a real disk: the target must have a size-capped tmpfs chaoskit set up.
    """

    KINDS: ClassVar[frozenset[str]] = frozenset({"process", "container"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"process": "process", "container": "docker"}
    LAUNCH_NEEDS: ClassVar[frozenset[str]] = frozenset({"tmpfs"})

    type: Literal["disk_full"]
    leave: Size | None = None
    """Bytes left free, e.g. ``0B`` (completely full) or ``1MiB``."""
    free: Percent | None = None
    """Share left free, e.g. ``1%``."""
    path: str | None = None
    """The tmpfs mount to fill; by default the target's only tmpfs."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules({"oneOf": [is_set("leave"), is_set("free")]})
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.leave is None) == (self.free is None):
            raise ValueError("disk_full needs exactly one of 'leave' (a size) or 'free' (a %)")
        if self.free is not None and not 0 <= self.free.percent < 100:
            raise beyond_schema(
                f"disk_full 'free' must be from 0% to below 100%, got '{self.free}'"
            )
        return self


class ClockSkewFault(FaultBase):
    """Shift the target's wall clock by ``skew`` (libfaketime; monotonic time is untouched)."""

    KINDS: ClassVar[frozenset[str]] = frozenset({"process", "container"})
    DRIVERS: ClassVar[Mapping[str, str]] = {"process": "clock", "container": "clock"}
    LAUNCH_NEEDS: ClassVar[frozenset[str]] = frozenset({"faketime"})

    type: Literal["clock_skew"]
    skew: Duration
    """How far to move the clock, e.g. ``+5m`` or ``-2h``; not zero."""

    @field_validator("skew")
    @classmethod
    def _not_zero(cls, value: Duration) -> Duration:
        if not value:
            raise beyond_schema("'skew' of zero changes nothing: give e.g. '+5m' or '-30s'")
        return value


BUILTIN_FAULTS: tuple[type[FaultBase], ...] = (
    LatencyFault,
    BandwidthFault,
    SlowCloseFault,
    TimeoutFault,
    ResetPeerFault,
    SlicerFault,
    LimitDataFault,
    PartitionFault,
    CrashFault,
    PauseFault,
    RemoveFault,
    DrainFault,
    HostDownFault,
    DiskFullFault,
    ClockSkewFault,
)


def fault_plugins() -> Loaded:
    """The fault types other packages add (entry point group ``chaoskit.faults``): each a
    :class:`FaultBase` model whose ``type`` is the entry point's name and which names its
    drivers; the rest set aside with the reason."""

    def needs(model: type[FaultBase]) -> str | None:
        return None if model.DRIVERS else "names no driver: set DRIVERS (target kind -> driver)"

    return typed_plugins("chaoskit.faults", FaultBase, BUILTIN_FAULTS, needs)


FAULT_MODELS: tuple[type[FaultBase], ...] = BUILTIN_FAULTS
"""Every fault model: the built-in ones, then those plugins add (``model/_plugins.py``)."""


def fault_types() -> list[str]:
    """Every fault ``type`` an experiment may use (built-in and from plugins)."""
    return [name for name in map(type_of, FAULT_MODELS) if name is not None]


FaultType = Literal[
    "latency",
    "bandwidth",
    "slow_close",
    "timeout",
    "reset_peer",
    "slicer",
    "limit_data",
    "partition",
    "crash",
    "pause",
    "remove",
    "drain",
    "host_down",
    "disk_full",
    "clock_skew",
]
"""A fault's ``type``; with plugins installed, theirs too (``model/_plugins.py``)."""

Fault = Annotated[
    LatencyFault
    | BandwidthFault
    | SlowCloseFault
    | TimeoutFault
    | ResetPeerFault
    | SlicerFault
    | LimitDataFault
    | PartitionFault
    | CrashFault
    | PauseFault
    | RemoveFault
    | DrainFault
    | HostDownFault
    | DiskFullFault
    | ClockSkewFault,
    Field(discriminator="type"),
]
"""Any fault, chosen by its ``type``; with plugins installed, theirs too."""
