"""Shared building blocks of the schema: the strict base model and constrained names."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

__all__ = ["Glob", "Model", "Name", "Template"]


class Model(BaseModel):
    """Base of every schema object: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
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
