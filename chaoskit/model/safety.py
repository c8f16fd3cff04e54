"""The experiment's safety valve: abort conditions, a time limit and a kill switch."""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..units import Duration, Percent, Rate, UnitError
from ._base import (
    Model,
    Name,
    NonNegativeDuration,
    PositiveDuration,
    beyond_schema,
    is_set,
    schema_rules,
)

__all__ = ["AbortCondition", "KillSwitch", "Safety", "Threshold", "parse_threshold"]

Threshold = Duration | Percent | Rate | float
"""A limit in the unit of its metric: ``500ms`` (latency), ``20%`` (error rate), ``50/s``
(throughput) or a plain number (probes)."""


def parse_threshold(value: object) -> Threshold:
    """Read a threshold by its shape: ``%`` is a share, ``/s`` a rate, a unit a duration."""
    if isinstance(value, Duration | Percent | Rate):
        return value
    if isinstance(value, bool):
        raise ValueError(f"a threshold is a number or a quantity, not {value!r}")
    if isinstance(value, int | float):
        return _finite(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"a threshold is a number or a quantity, not {value!r}")
    text = value.strip()
    try:
        if text.endswith("%"):
            return Percent.parse(text)
        if "/" in text:
            return Rate.parse(text)
        try:
            number = float(text)
        except ValueError:
            return Duration.parse(text)
        return _finite(number, text)
    except UnitError as exc:
        raise ValueError(str(exc)) from None


def _finite(number: float, written: object) -> float:
    """``number``, unless it is NaN or infinite: no measurement can be compared against it."""
    if not math.isfinite(number):
        raise ValueError(
            f"a threshold must be a finite number, not {str(written)[:40]!r}: "
            "a limit of NaN or infinity can never trip"
        )
    return number


class AbortCondition(Model):
    """Abort the run when ``metric`` stays above (or below) a limit for ``for``."""

    metric: Name
    """A steady-state metric's name."""
    above: Threshold | None = None
    below: Threshold | None = None
    for_: NonNegativeDuration = Field(default=Duration(0), alias="for")
    """How long the breach must last before the valve trips; ``0s`` trips at once."""
    group: Literal["experiment", "control", "all"] = "experiment"
    """Which traffic to watch: ``experiment`` (the requests the fault can reach: the
    experiment group with a concurrent control, every request without one), ``control`` or
    ``all``."""

    @field_validator("above", "below", mode="before")
    @classmethod
    def _parse(cls, value: object) -> Threshold | None:
        return None if value is None else parse_threshold(value)

    model_config = ConfigDict(
        json_schema_extra=schema_rules({"oneOf": [is_set("above"), is_set("below")]})
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.above is None) == (self.below is None):
            raise ValueError("an abort condition needs exactly one of 'above' or 'below'")
        return self

    @property
    def limit(self) -> Threshold:
        """The threshold, whichever side it is on."""
        if self.above is not None:
            return self.above
        if self.below is not None:
            return self.below
        raise ValueError("an abort condition needs 'above' or 'below'")  # validation says so


class KillSwitch(Model):
    """Ways a person can stop the run at once (everything is reverted first)."""

    file: str | None = None
    """A path whose appearance aborts the run; default ``<run dir>/HALT`` (``chaoskit halt``)."""
    signals: bool = True
    """Abort on SIGINT/SIGTERM (Ctrl-C) after reverting every fault."""


class Safety(Model):
    """When to give up: hard limits watched on every sample, independent of statistics."""

    abort_when: list[AbortCondition] = Field(default_factory=list)
    max_duration: PositiveDuration = Duration.parse("15m")
    """The whole run, all trials included, is aborted past this."""
    kill_switch: KillSwitch = Field(default_factory=KillSwitch)
    watchdog_lease: PositiveDuration = Duration.parse("30s")
    """How long the runner may go without a sign of life before its watchdog takes it for hung,
    kills it and reverts every fault. A runner that dies is noticed at once, whatever this says;
    the lease only has to outlast the longest stall a busy machine can cause."""

    @field_validator("watchdog_lease")
    @classmethod
    def _lease(cls, value: Duration) -> Duration:
        if value.seconds < 1.0:
            raise beyond_schema(
                f"a watchdog lease of '{value}' would kill a healthy runner on any busy machine: "
                "give it at least 1s (the default is 30s; a dead runner is noticed at once anyway)"
            )
        return value
