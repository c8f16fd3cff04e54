"""Shared building blocks of the schema: the strict base model and constrained names."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from datetime import date, time
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ..plugins import Loaded, Plugin, load_group
from ..units import Duration, Percent

__all__ = [
    "BEYOND_SCHEMA",
    "Clock",
    "Date",
    "Fraction",
    "Glob",
    "Model",
    "Name",
    "NonNegativeDuration",
    "PositiveDuration",
    "Template",
    "Version",
    "beyond_schema",
    "close_match",
    "is_set",
    "schema_rules",
    "type_of",
    "typed_plugins",
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


def close_match(word: str, options: list[str]) -> str | None:
    """The option ``word`` most likely misspells, if one is close (for did-you-mean hints)."""
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return found[0] if found else None


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):  # Python's True == 1: the literal 1 would take it
        raise ValueError(f"expected 1, got {str(value).lower()}")
    return value


Version = Annotated[Literal[1], BeforeValidator(_not_a_bool)]
"""The file format's version: 1."""

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
]
"""An identifier people type and read in reports: letters, digits, ``_ . -``; at most 63."""

Glob = Annotated[str, StringConstraints(min_length=1, max_length=253)]
"""A shell-style name pattern (``backend-*``, ``db-[12]``) matched against target names."""

Template = Annotated[str, StringConstraints(min_length=1)]
"""Text that may hold run-time placeholders such as ``${ports.frontend}`` (see variables)."""


BEYOND_SCHEMA = "beyond_schema"
"""The error type of rules the JSON Schema cannot state (a size's magnitude once its unit is
read, two fields compared): ``chaoskit validate`` finds them, an editor does not."""


def beyond_schema(message: str) -> PydanticCustomError:
    """The error to raise for a rule the JSON Schema cannot state (see :data:`BEYOND_SCHEMA`)."""
    return PydanticCustomError(BEYOND_SCHEMA, message.replace("{", "{{").replace("}", "}}"))


def is_set(name: str, shape: str = "value") -> dict[str, Any]:
    """JSON Schema: field ``name`` is given (not null; a non-empty list or mapping)."""
    shapes: dict[str, dict[str, Any]] = {
        "value": {"not": {"type": "null"}},
        "list": {"type": "array", "minItems": 1},
        "map": {"type": "object", "minProperties": 1},
    }
    given = shapes[shape]
    return {"required": [name], "properties": {name: given}}


def schema_rules(*rules: dict[str, Any]) -> Any:
    """A ``json_schema_extra`` adding ``rules`` (each a JSON Schema the object must also
    match): how a model states in its schema what its ``model_validator`` checks."""

    def extra(schema: dict[str, Any]) -> None:
        schema.setdefault("allOf", []).extend(rules)

    return extra


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


_NUMBER = r"(?:\d+(?:\.\d+)?|\.\d+) *(?:ns|us|µs|ms|s|m|h|d) *"
_SOME = r"(?=[^1-9]*[1-9])"  # some digit other than 0: the duration is not zero
NON_NEGATIVE_DURATION = rf"^\s*\+?(?:{_NUMBER})+\s*$"
POSITIVE_DURATION = rf"^\s*\+?{_SOME}(?:{_NUMBER})+\s*$"
_SHARE = r"^\s*\+?(?:0*[1-9]\d?(?:\.\d+)?|0*100(?:\.0+)?|0*\.\d*[1-9]\d*|0+\.\d*[1-9]\d*)\s*%\s*$"

NonNegativeDuration = Annotated[
    Duration,
    AfterValidator(_not_negative),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": NON_NEGATIVE_DURATION}, {"const": 0}],
            "examples": ["0s", "2s"],
        }
    ),
]
"""A duration of zero or more (most delays and offsets)."""

PositiveDuration = Annotated[
    Duration,
    AfterValidator(_positive),
    WithJsonSchema({"type": "string", "pattern": POSITIVE_DURATION, "examples": ["30s", "1m30s"]}),
]
"""A duration above zero (phases, timeouts, limits)."""

Fraction = Annotated[
    float,
    BeforeValidator(_share),
    Field(gt=0.0, le=1.0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                {"type": "string", "pattern": _SHARE},
            ],
            "examples": ["34%", 0.5],
        }
    ),
]
"""A share above 0 and at most 1, written ``0.34`` or ``34%``."""


def _iso(kind: type[date] | type[time], pattern: str, words: str) -> Any:
    """Read ``kind`` from text matching ``pattern``; a value of the right form that is no
    real date or time (``2026-02-30``, ``25:00``) is beyond what the schema's pattern says."""

    def read(value: object) -> object:
        if not isinstance(value, str):
            return value
        if re.fullmatch(pattern, value) is None:
            raise ValueError(f"'{value}' is not {words}")
        try:
            return kind.fromisoformat(value)
        except ValueError:
            raise beyond_schema(f"'{value}' is not {words}") from None

    return BeforeValidator(read)


_CLOCK = r"^\d{2}:\d{2}(:\d{2})?$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"

Clock = Annotated[
    time,
    _iso(time, _CLOCK, "a time of day such as '10:00' or '17:30:00'"),
    WithJsonSchema({"type": "string", "pattern": _CLOCK}),
]
"""A time of day, ``HH:MM`` or ``HH:MM:SS``."""

Date = Annotated[
    date,
    _iso(date, _DATE, "a date such as '2026-12-24'"),
    WithJsonSchema({"type": "string", "format": "date", "pattern": _DATE}),
]
"""A calendar date, ``YYYY-MM-DD``."""


def type_of(model: type[BaseModel]) -> str | None:
    """The one ``type`` a model in a discriminated union is chosen by, if it has exactly one."""
    field = model.model_fields.get("type")
    values = get_args(field.annotation) if field is not None else ()
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def typed_plugins(
    group: str,
    base: type[BaseModel],
    builtin: Iterable[type[BaseModel]],
    needs: Callable[[Any], str | None],
) -> Loaded:
    """The models plugins add to a union chosen by ``type`` (faults, probes): each a subclass
    of ``base`` whose ``type`` is ``Literal['<entry point name>']``, not taken, and with what
    ``needs`` asks of it (None when it has it); the rest set aside with the reason."""
    taken = {type_of(model) for model in builtin}

    def fit(plugin: Plugin, found: object) -> str | None:
        if not (isinstance(found, type) and issubclass(found, base)):
            return f"is not a model subclassing chaoskit.model.{base.__name__}"
        if type_of(found) != plugin.name:
            return f"its 'type' must be Literal['{plugin.name}'], the entry point's name"
        if plugin.name in taken:
            return f"type '{plugin.name}' is taken (built in, or by another plugin)"
        problem = needs(found)
        if problem is None:
            taken.add(plugin.name)
        return problem

    return load_group(group, fit)
