"""Errors of the load layer: inputs it cannot work with, a sending process that failed, and
probe readings that failed."""

from __future__ import annotations

import re

__all__ = [
    "LoadConfigError",
    "LoadWorkerError",
    "ProbeConfigError",
    "ProbeFailure",
    "refuse_placeholders",
]


class LoadConfigError(ValueError):
    """A load section the generator cannot run as given; the message says what to change."""


class LoadWorkerError(RuntimeError):
    """A sending process of the load generator failed, died or hung; the message says which."""


class ProbeConfigError(ValueError):
    """A probe that can never give a reading as written (bad import, unknown program, ...)."""


class ProbeFailure(Exception):
    """One reading of a probe failed; the message is what the sample records as its error.

    ``lasting`` marks a failure that no amount of waiting mends (a query Prometheus cannot
    parse, several series where one is needed): a preflight check refuses the run on it."""

    def __init__(self, message: str, *, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


_PLACEHOLDER = re.compile(r"(?<!\$)\$\{[^}]*\}")


def refuse_placeholders(text: str, where: str, error: type[ValueError]) -> None:
    """Raise ``error`` when ``text`` still holds a ``${...}`` run-time placeholder."""
    found = _PLACEHOLDER.search(text)
    if found:
        raise error(
            f"{where} still holds the placeholder '{found.group(0)}': fill run-time "
            "placeholders first (chaoskit.model.variables.render)"
        )
