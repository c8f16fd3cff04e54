"""Shared building blocks of the schema: the strict base model and constrained names."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from ..units import Duration, Percent

__all__ = [
    "Fraction",
    "Glob",
    "Model",
    "Name",
    "NonNegativeDuration",
    "PositiveDuration",
    "Template",
]


class Model(BaseModel):
    """Base of every schema object: unknown keys are errors, values are immutable, NaN and
    infinity are refused (nothing can be compared against them)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        populate_by_name=True,
        defer_build=True,  # validators are built on first use: faster start for every command
        validate_default=True,
    )


Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
]
"""An identifier people type and read in reports: letters, digits, ``_ . -``; at most 63."""

Glob = Annotated[str, StringConstraints(min_length=1, max_length=253)]
"""A shell-style name pattern (``backend-*``, ``db-[12]``) matched against target names."""

Template = Annotated[str, StringConstraints(min_length=1)]
"""Text that may hold run-time placeholders such as ``${ports.frontend}`` (see variables)."""


def _not_negative(value: Duration) -> Duration:
    if value.nanoseconds < 0:
        raise ValueError(f"must not be negative, got '{value}'")
    return value


def _positive(value: Duration) -> Duration:
    if value.nanoseconds <= 0:
        raise ValueError(f"must be above zero, got '{value}'")
    return value


def _share(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        return Percent.parse(value).fraction
    return value


NonNegativeDuration = Annotated[Duration, AfterValidator(_not_negative)]
"""A duration of zero or more (most delays and offsets)."""

PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A duration above zero (phases, timeouts, limits)."""

Fraction = Annotated[float, BeforeValidator(_share), Field(gt=0.0, le=1.0)]
"""A share above 0 and at most 1, written ``0.34`` or ``34%``."""
