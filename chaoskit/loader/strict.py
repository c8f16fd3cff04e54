"""Validation as the JSON Schema reads a file: no text where a number or true/false belongs.

Pydantic's lax mode would take ``"3"`` for 3 and ``"yes"`` for true; an editor using the
schema would not, and the two must agree. A placeholder's value is text by nature
(``${env.N}``), so where one stood, its text is read as the number it spells.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..model.variables import is_placeholder
from .documents import value_at
from .errors import Path_
from .explain import doc_path

__all__ = ["validate_strictly"]

M = TypeVar("M", bound=BaseModel)

_TEXT_READ_AS: dict[str, Callable[[str], object]] = {
    "int_type": lambda text: int(text.strip(), 10),
    "float_type": lambda text: float(text.strip()),
    "bool_type": lambda text: {"true": True, "false": False}[text.strip().lower()],
}
"""How a placeholder's text is read where a number or true/false is wanted."""


def _retyped(data: Any, written: Any, exc: ValidationError) -> Any | None:
    """``data`` with the values strict validation refused but a person would accept: a number
    or true/false that came from a ``${...}`` placeholder as text, and a whole number written
    ``3.0`` (a JSON Schema integer). None when there is no such value."""
    changed = False
    for error in exc.errors(include_url=False):
        read = _TEXT_READ_AS.get(error["type"])
        path = doc_path(data, error["loc"])
        value, was = error.get("input"), value_at(written, path)
        if isinstance(value, str) and read is not None and is_placeholder(was):
            try:
                new: Any = read(value)
            except (ValueError, KeyError):
                continue
        elif error["type"] == "int_type" and isinstance(value, float) and value.is_integer():
            new = int(value)
        else:
            continue
        if not changed:
            data, changed = copy.deepcopy(data), True
        _put(data, path, new)
    return data if changed else None


def _put(data: Any, path: Path_, value: Any) -> None:
    *parents, last = path
    value_at(data, tuple(parents))[last] = value


def validate_strictly(model: type[M], data: Any, written: Any) -> M:
    """Validate ``data`` as the JSON Schema reads it: no text where a number or true/false is
    wanted, unless a placeholder put it there (``${env.N}`` is always text); ``written`` is the
    document before substitution."""
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        retyped = _retyped(data, written, exc)
        if retyped is None:
            raise
        return model.model_validate(retyped, strict=True)
