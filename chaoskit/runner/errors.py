"""How a run is refused or fails before its verdict: each error's message says why."""

from __future__ import annotations

__all__ = ["BringUpError", "PreflightError"]


class PreflightError(Exception):
    """The run was refused before anything was touched (exit 2); the message says why."""


class BringUpError(Exception):
    """The system under test could not be brought up (exit 6); the message says which part
    and why."""
