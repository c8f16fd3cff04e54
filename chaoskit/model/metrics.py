"""Steady-state metrics: what "healthy" means, measured from the load or from probes."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..plugins import Loaded
from ..units import Duration, Percent, Rate
from ._base import Model, Name, Template, beyond_schema, is_set, schema_rules, typed_plugins

__all__ = [
    "CommandProbe",
    "ErrorRateMetric",
    "HttpProbe",
    "LatencyMetric",
    "Metric",
    "Probe",
    "ProbeMetric",
    "PrometheusProbe",
    "PythonProbe",
    "ReplicasProbe",
    "ScrapeProbe",
    "ThroughputMetric",
    "probe_plugins",
]

Direction = Literal["increase", "decrease", "both"]


class _MetricBase(Model):
    name: Name
    """How the metric is called in reports and in ``safety.abort_when``."""
    critical: bool = False
    """A critical metric that deviates fails the run whatever the others say."""
    description: str = ""


class LatencyMetric(_MetricBase):
    """Request latency from the load generator, compared as a ratio to the control."""

    of: Literal["latency"]
    quantile: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Which quantile to judge: 0.5 (median, default), 0.95, 0.99."""
    margin: Percent | None = None
    """How much slower still counts as steady, e.g. ``25%`` (a ratio of 1.25). Default: 10% for
    the median, 25% for tail quantiles (``hypothesis.margins``)."""
    max: Duration | None = None
    """An absolute limit (an SLO) the quantile must stay under, e.g. ``500ms``."""
    direction: Direction = "increase"
    """The harmful direction; latency normally hurts when it increases."""

    @field_validator("margin")
    @classmethod
    def _margin_positive(cls, value: Percent | None) -> Percent | None:
        if value is not None and value.percent <= 0:
            raise beyond_schema(f"'margin' must be above 0%, got '{value}'")
        return value


class ErrorRateMetric(_MetricBase):
    """Share of failed requests from the load generator."""

    of: Literal["error_rate"]
    max: Percent | None = None
    """An absolute limit (an SLO), e.g. ``1%``."""
    margin: Percent | None = None
    """Allowed absolute increase over the control, in percentage points, e.g. ``0.5%``.
    Default: the larger of 0.05 points and half the baseline rate."""
    errors: list[Annotated[str, Field(pattern=r"^([1-5]xx|[1-5]\d\d|timeout|connect)$")]] = Field(
        default_factory=lambda: ["5xx", "timeout", "connect"], min_length=1
    )
    """What counts as an error: status classes (``5xx``), codes (``429``), ``timeout``,
    ``connect`` (connection refused or reset)."""
    direction: Direction = "increase"

    @field_validator("max", "margin")
    @classmethod
    def _share(cls, value: Percent | None) -> Percent | None:
        if value is not None and not 0 < value.percent < 100:
            why = " (every request may fail: nothing could be judged)" if value.percent else ""
            raise beyond_schema(f"must be above 0% and below 100%, got '{value}'{why}")
        return value


class ThroughputMetric(_MetricBase):
    """Successful requests per second from the load generator."""

    of: Literal["throughput"]
    min: Rate | None = None
    """An absolute floor, e.g. ``90/s``."""
    margin: Percent | None = None
    """Allowed relative drop, e.g. ``5%`` (a ratio of 0.95). Default 5%."""
    direction: Direction = "decrease"

    @field_validator("margin")
    @classmethod
    def _share(cls, value: Percent | None) -> Percent | None:
        if value is not None and not 0 < value.percent < 100:
            raise beyond_schema(f"'margin' must be above 0% and below 100%, got '{value}'")
        return value


# ---------------------------------------------------------------------------------------------
# Probes


class HttpProbe(Model):
    """Request a URL; the value is 1/0 for an expected status, the latency, or a JSON number."""

    type: Literal["http"]
    url: Template
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200], min_length=1
    )
    """Statuses that count as up."""
    value: Literal["up", "latency", "json"] = "up"
    """``up``: 1 when the status is expected, else 0; ``latency``: seconds; ``json``: a number
    read from the response at ``json_path``."""
    json_path: str | None = None
    """Dotted path to a number in the JSON body, e.g. ``breakers.backend-1.failures``."""
    timeout: Duration = Duration.parse("2s")

    model_config = ConfigDict(
        json_schema_extra=schema_rules(
            {
                "if": {"required": ["value"], "properties": {"value": {"const": "json"}}},
                "then": is_set("json_path"),
                "else": {"properties": {"json_path": {"type": "null"}}},
            }
        )
    )

    @model_validator(mode="after")
    def _json_path(self) -> Self:
        if (self.value == "json") != (self.json_path is not None):
            raise ValueError("give 'json_path' exactly when value is 'json'")
        return self


class PrometheusProbe(Model):
    """Evaluate a PromQL query on a Prometheus server; the value is the single result."""

    type: Literal["prometheus"]
    url: Template
    """The Prometheus server, e.g. ``http://127.0.0.1:9090``."""
    query: str = Field(min_length=1)
    """A PromQL expression that yields one sample."""
    timeout: Duration = Duration.parse("5s")


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class ScrapeProbe(Model):
    """Read one sample from a ``/metrics`` endpoint in Prometheus text format."""

    type: Literal["scrape"]
    url: Template
    """The exposition endpoint, e.g. ``http://127.0.0.1:${ports.frontend}/metrics``."""
    metric: str = Field(pattern=_METRIC_NAME.pattern)
    """The sample name, e.g. ``frontend_breaker_state``."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels the sample must carry; with several matches, their values are summed."""
    timeout: Duration = Duration.parse("2s")

    @field_validator("metric")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _METRIC_NAME.match(value):
            raise ValueError(f"'{value}' is not a Prometheus metric name")
        return value


class CommandProbe(Model):
    """Run a command (an argv list, never a shell string); the value is its exit code or output."""

    type: Literal["command"]
    command: list[Template] = Field(min_length=1)
    """The program and its arguments, e.g. ``["pg_isready", "-h", "127.0.0.1"]``."""
    value: Literal["exit_code", "stdout"] = "exit_code"
    """``exit_code``, or ``stdout`` parsed as a number."""
    timeout: Duration = Duration.parse("5s")
    env: dict[str, Template] = Field(default_factory=dict)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                "a command is a list of arguments, not a shell string: write "
                f"{value.split()!r} (chaoskit never runs a shell)"
            )
        return value


class PythonProbe(Model):
    """Call a Python function ``module:function`` that returns a number."""

    type: Literal["python"]
    callable: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """Where the function lives, e.g. ``mychecks.db:replication_lag``."""
    arguments: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Keyword arguments passed to the function."""
    timeout: Duration = Duration.parse("5s")


class ReplicasProbe(Model):
    """Count a Docker Swarm service's tasks: its orchestrator's healing, as a number."""

    type: Literal["replicas"]
    service: str = Field(min_length=1)
    """The service's name."""
    engine: Name | None = None
    """A ``system.engines`` name, a manager of the service's swarm; by default the first
    named engine, else the environment's."""
    value: Literal["running", "missing"] = "missing"
    """``missing``: the replicas asked for less the tasks running now (0 when the service is
    whole: judge it with ``max: 0``); ``running``: the tasks running now."""
    timeout: Duration = Duration.parse("5s")


BUILTIN_PROBES: tuple[type[Model], ...] = (
    HttpProbe,
    PrometheusProbe,
    ScrapeProbe,
    CommandProbe,
    PythonProbe,
    ReplicasProbe,
)


def probe_plugins() -> Loaded:
    """The probe types other packages add (entry point group ``chaoskit.probes``): each a
    model whose ``type`` is the entry point's name, with a ``reader()`` method returning a
    ``chaoskit.load.ProbeReader``; the rest set aside with the reason."""

    def needs(model: type[Model]) -> str | None:
        return None if callable(getattr(model, "reader", None)) else "has no reader() method"

    return typed_plugins("chaoskit.probes", Model, BUILTIN_PROBES, needs)


PROBE_MODELS: tuple[type[Model], ...] = BUILTIN_PROBES
"""Every probe model: the built-in ones, then those plugins add (``model/_plugins.py``)."""

Probe = Annotated[
    HttpProbe | PrometheusProbe | ScrapeProbe | CommandProbe | PythonProbe | ReplicasProbe,
    Field(discriminator="type"),
]
"""Any probe, chosen by its ``type``; with plugins installed, theirs too."""


class ProbeMetric(_MetricBase):
    """Any number a probe reads on an interval, with limits or a margin around the baseline."""

    of: Literal["probe"]
    probe: Probe
    interval: Duration = Duration.parse("1s")
    """How often the probe is sampled."""
    max: float | None = None
    """An absolute upper limit on the value."""
    min: float | None = None
    """An absolute lower limit on the value."""
    margin: Percent | None = None
    """Allowed relative change from the control or baseline in the harmful direction."""
    direction: Direction = "increase"

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if self.interval.nanoseconds < 10_000_000:
            raise beyond_schema(f"probe 'interval' must be at least 10ms, got '{self.interval}'")
        if self.max is not None and self.min is not None and self.min >= self.max:
            raise beyond_schema(f"'min' ({self.min}) must be below 'max' ({self.max})")
        return self


Metric = Annotated[
    LatencyMetric | ErrorRateMetric | ThroughputMetric | ProbeMetric,
    Field(discriminator="of"),
]
"""A steady-state metric, chosen by ``of``."""
