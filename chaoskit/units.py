"""Quantities written the way people say them: ``250ms``, ``64MiB``, ``100/s``, ``20%``.

Each type parses its text form, formats back to a canonical text form that parses to the same
value, and plugs into pydantic (strings in, strings out, a pattern in the JSON Schema).
Values are stored exactly (integer nanoseconds and bytes, decimal percentages) so that
formatting then parsing always gives the value back.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Self

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = ["Bandwidth", "Duration", "Percent", "Rate", "Size", "UnitError"]


class UnitError(ValueError):
    """Text that is not a valid quantity; the message quotes it and lists accepted forms."""


def _bad(kind: str, text: object, forms: str, hint: str = "") -> UnitError:
    shown = repr(text) if not isinstance(text, str) else f"'{text}'"
    if len(shown) > 60:
        shown = shown[:56] + "...'"
    extra = f" {hint}" if hint else ""
    return UnitError(f"invalid {kind} {shown}:{extra} expected {forms}")


MAX_DIGITS = 24
"""A number in a quantity may have at most this many digits: more is a typo or an attack, and
Python refuses to print whole numbers of more than 4300 digits (and decimals round at 28)."""


def _decimal(text: str) -> Decimal:
    if sum(c.isdigit() for c in text) > MAX_DIGITS:
        raise _TooManyDigits(text)
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regexes only pass numbers
        raise ValueError(text) from exc
    return value


class _TooManyDigits(ValueError):
    """A number with more than MAX_DIGITS digits (turned into a UnitError by the caller)."""


def _plain(value: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros: 1.50 -> '1.5'."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class _Quantity:
    """Shared behaviour: parse strings (and numbers where meaningful), emit text, compare by
    value within one kind, and plug into pydantic."""

    _KIND: ClassVar[str]
    _PATTERN: ClassVar[str]
    _EXAMPLES: ClassVar[tuple[str, ...]]
    _ACCEPTS_NUMBERS: ClassVar[bool] = False

    @classmethod
    def parse(cls, text: str) -> Self:
        raise NotImplementedError

    def _key(self) -> Any:
        """The exact value quantities of one kind are compared and hashed by."""
        raise NotImplementedError

    def _compare(self, other: object, op: Callable[[Any, Any], bool]) -> bool:
        if type(other) is not type(self) or not isinstance(other, _Quantity):
            return NotImplemented  # type: ignore[no-any-return]  # lets Python try the other side
        return bool(op(self._key(), other._key()))

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self}')"

    @classmethod
    def _coerce(cls, value: object) -> Self:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls._from_number(value)

    @classmethod
    def _digits_error(cls, text: str) -> UnitError:
        return cls._error(text, f"a number may have at most {MAX_DIGITS} digits;")

    @classmethod
    def _from_number(cls, value: object) -> Self:
        raise cls._error(value)

    @classmethod
    def _error(cls, text: object, hint: str = "") -> UnitError:
        return _bad(cls._KIND, text, cls._forms(), hint)

    @classmethod
    def _forms(cls) -> str:
        raise NotImplementedError

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        text: dict[str, Any] = {"type": "string", "pattern": cls._PATTERN}
        if cls is Duration:  # a bare 0 needs no unit
            return {"anyOf": [text, {"const": 0}], "examples": list(cls._EXAMPLES)}
        if cls._ACCEPTS_NUMBERS:
            return {
                "anyOf": [text, {"type": "integer", "minimum": 0}],
                "examples": list(cls._EXAMPLES),
            }
        return {**text, "examples": list(cls._EXAMPLES)}


# --------------------------------------------------------------------------------------------
# Durations

_DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_TEXT = re.compile(r"[+-]?(?:(?:\d+(?:\.\d+)?|\.\d+) *(?:ns|us|µs|ms|s|m|h|d) *)+")
"""A duration once stripped: spaces may follow a number or a unit (``2 s``, ``1m 30s``)."""
MAX_DURATION_NS = 36500 * _DURATION_UNITS["d"]
"""The longest duration a file may give: 100 years (every timer and sleep can take it)."""
_FORMAT_ORDER = (("d", 86_400_000_000_000), ("h", 3_600_000_000_000), ("m", 60_000_000_000))


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Duration(_Quantity):
    """A span of time, stored as integer nanoseconds; may be negative (clock skew)."""

    nanoseconds: int

    def _key(self) -> int:
        return self.nanoseconds

    _KIND: ClassVar[str] = "duration"
    _PATTERN: ClassVar[str] = (
        r"^\s*[+-]?(?:(?:\d+(?:\.\d+)?|\.\d+) *(?:ns|us|µs|ms|s|m|h|d) *)+\s*$"
    )
    _EXAMPLES: ClassVar[tuple[str, ...]] = ("250ms", "2s", "1m30s", "1.5h")

    @classmethod
    def _forms(cls) -> str:
        return (
            "a number with a unit (ns, us, ms, s, m, h, d), parts may be combined, "
            "e.g. '250ms', '2s', '1m30s', '1.5h'"
        )

    @classmethod
    def of(cls, seconds: float) -> Duration:
        """The duration of ``seconds`` seconds, rounded to the nanosecond."""
        if not math.isfinite(seconds):
            raise cls._error(seconds, "it is not a finite number of seconds;")
        return cls(round(Decimal(repr(seconds)) * 1_000_000_000))

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``'1m30s'``, ``'250ms'``, ``'-5m'``; a bare number is refused (which unit?)."""
        compact = text.strip().replace(" ", "")
        if not _DURATION_TEXT.fullmatch(text.strip()):
            hint = ""
            if re.fullmatch(r"[+-]?\d+(\.\d+)?", compact):
                hint = f"a bare number has no unit, write '{compact}s' or '{compact}ms';"
            raise cls._error(text, hint)
        sign = -1 if compact.startswith("-") else 1
        total = Decimal(0)
        try:
            for number, unit in _DURATION_PART.findall(compact.lstrip("+-")):
                total += _decimal(number) * _DURATION_UNITS[unit]
        except _TooManyDigits:
            raise cls._digits_error(text) from None
        if total > MAX_DURATION_NS:
            raise cls._error(text, "it is longer than 36500d (100 years);")
        return cls(sign * round(total))

    @classmethod
    def _from_number(cls, value: object) -> Duration:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise cls._error(value)
        if value == 0:
            return cls(0)
        raise cls._error(value, f"a bare number has no unit, write '{value}s' or '{value}ms';")

    @property
    def seconds(self) -> float:
        """The duration in seconds, as a float (for sleeps and arithmetic)."""
        return self.nanoseconds / 1_000_000_000

    def __str__(self) -> str:
        ns = abs(self.nanoseconds)
        sign = "-" if self.nanoseconds < 0 else ""
        if ns == 0:
            return "0s"
        if ns < 1_000_000_000:
            for unit, size in (("ms", 1_000_000), ("us", 1_000)):
                if ns % size == 0:
                    return f"{sign}{ns // size}{unit}"
            return f"{sign}{ns}ns"
        parts: list[str] = []
        for unit, size in _FORMAT_ORDER:
            count, ns = divmod(ns, size)
            if count:
                parts.append(f"{count}{unit}")
        if ns:
            parts.append(_plain(Decimal(ns) / 1_000_000_000) + "s")
        return sign + "".join(parts)

    def __bool__(self) -> bool:
        return self.nanoseconds != 0

    def __add__(self, other: Duration) -> Duration:
        return Duration(self.nanoseconds + other.nanoseconds)

    def __neg__(self) -> Duration:
        return Duration(-self.nanoseconds)


# --------------------------------------------------------------------------------------------
# Sizes

_SIZE_UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_TEXT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)?", re.IGNORECASE)
_SIZE_FORMAT = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_SIZE_FORMAT_DECIMAL = (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000))


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Size(_Quantity):
    """A number of bytes; ``KiB``/``MiB`` are powers of 1024, ``kB``/``MB`` of 1000."""

    bytes: int

    def _key(self) -> int:
        return self.bytes

    _KIND: ClassVar[str] = "size"
    _PATTERN: ClassVar[str] = (
        r"^\s*(\d+(\.\d+)?|\.\d+)\s*([bB]|[kKmMgGtT][bB]|[kKmMgGtT][iI][bB])?\s*$"
    )
    _EXAMPLES: ClassVar[tuple[str, ...]] = ("64MiB", "1GB", "512KiB", "100B")
    _ACCEPTS_NUMBERS: ClassVar[bool] = True

    @classmethod
    def _forms(cls) -> str:
        return (
            "a whole number of bytes, or a number with a unit (B, kB, MB, GB, TB, "
            "KiB, MiB, GiB, TiB), e.g. '64MiB', '1GB', '512KiB'"
        )

    @classmethod
    def parse(cls, text: str) -> Size:
        """Parse ``'64MiB'``, ``'1GB'``, ``'4096'`` (bytes)."""
        match = _SIZE_TEXT.fullmatch(text.strip())
        if not match:
            raise cls._error(text)
        number, unit = match.groups()
        factor = _SIZE_UNITS.get((unit or "b").lower())
        if factor is None:
            raise cls._error(text, f"'{unit}' is not a size unit;")
        try:
            total = _decimal(number) * factor
        except _TooManyDigits:
            raise cls._digits_error(text) from None
        if total != total.to_integral_value():
            raise cls._error(text, "it is not a whole number of bytes;")
        return cls(int(total))

    @classmethod
    def _from_number(cls, value: object) -> Size:
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 1024.0 is a whole number, as JSON Schema counts
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return cls(value)
        raise cls._error(value)

    def __str__(self) -> str:
        for table in (_SIZE_FORMAT, _SIZE_FORMAT_DECIMAL):
            for unit, size in table:
                if self.bytes and self.bytes % size == 0:
                    return f"{self.bytes // size}{unit}"
        return f"{self.bytes}B"

    def __int__(self) -> int:
        return self.bytes


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Bandwidth(_Quantity):
    """Bytes per second, written as a size per second: ``'100kB/s'``, ``'1MiB/s'``."""

    bytes_per_second: int

    def _key(self) -> int:
        return self.bytes_per_second

    _KIND: ClassVar[str] = "bandwidth"
    _PATTERN: ClassVar[str] = (
        r"^\s*(\d+(\.\d+)?|\.\d+)\s*([bB]|[kKmMgGtT][bB]|[kKmMgGtT][iI][bB])?\s*/\s*s\s*$"
    )
    _EXAMPLES: ClassVar[tuple[str, ...]] = ("100kB/s", "1MiB/s", "56kB/s")

    @classmethod
    def _forms(cls) -> str:
        return "a size per second, e.g. '100kB/s', '1MiB/s', '500B/s'"

    @classmethod
    def parse(cls, text: str) -> Bandwidth:
        """Parse ``'100kB/s'``; the size part follows :class:`Size`."""
        size_text, slash, period = text.strip().rpartition("/")
        if not slash or period.strip().lower() not in ("s", "sec"):
            raise cls._error(text)
        try:
            size = Size.parse(size_text)
        except UnitError:
            raise cls._error(text) from None
        return cls(size.bytes)

    def __str__(self) -> str:
        return f"{Size(self.bytes_per_second)}/s"


# --------------------------------------------------------------------------------------------
# Rates

_RATE_UNITS: dict[str, int] = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600}
_RATE_TEXT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*/\s*([a-z]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Rate(_Quantity):
    """Events per unit of time, stored exactly as a count per period in seconds."""

    count: Decimal
    period_seconds: int = 1

    def _key(self) -> Decimal:
        return self.count / self.period_seconds

    _KIND: ClassVar[str] = "rate"
    _PATTERN: ClassVar[str] = r"^\s*(\d+(\.\d+)?|\.\d+)\s*/\s*(s|sec|m|min|h|hour)\s*$"
    _EXAMPLES: ClassVar[tuple[str, ...]] = ("100/s", "6000/min", "10/h")

    @classmethod
    def _forms(cls) -> str:
        return "a number per unit of time (/s, /min, /h), e.g. '100/s', '6000/min', '0.5/s'"

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``'100/s'``, ``'6000/min'``."""
        match = _RATE_TEXT.fullmatch(text.strip())
        if not match:
            hint = ""
            if re.fullmatch(r"\d+(\.\d+)?", text.strip()):
                hint = f"a bare number has no period, write '{text.strip()}/s';"
            raise cls._error(text, hint)
        number, unit = match.groups()
        period = _RATE_UNITS.get(unit.lower())
        if period is None:
            raise cls._error(text, f"'/{unit}' is not a period;")
        try:
            return cls(_decimal(number).normalize(), period)
        except _TooManyDigits:
            raise cls._digits_error(text) from None

    @classmethod
    def _from_number(cls, value: object) -> Rate:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise cls._error(value, f"a bare number has no period, write '{value}/s';")
        raise cls._error(value)

    @property
    def per_second(self) -> float:
        """Events per second, as a float."""
        return float(self.count / self.period_seconds)

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "h"}[self.period_seconds]
        return f"{_plain(self.count)}/{unit}"


# --------------------------------------------------------------------------------------------
# Percentages

_PERCENT_TEXT = re.compile(r"([+-]?(?:\d+(?:\.\d+)?|\.\d+))\s*%")


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Percent(_Quantity):
    """A percentage, stored exactly as written (``20%`` is ``Percent(Decimal('20'))``)."""

    percent: Decimal

    def _key(self) -> Decimal:
        return self.percent

    _KIND: ClassVar[str] = "percentage"
    _PATTERN: ClassVar[str] = r"^\s*[+-]?(\d+(\.\d+)?|\.\d+)\s*%\s*$"
    _EXAMPLES: ClassVar[tuple[str, ...]] = ("20%", "0.5%", "100%")

    @classmethod
    def _forms(cls) -> str:
        return "a number followed by '%', e.g. '20%', '0.5%'"

    @classmethod
    def parse(cls, text: str) -> Percent:
        """Parse ``'20%'``, ``'0.5%'``; a bare number is refused (is 0.5 half or 0.5 %?)."""
        match = _PERCENT_TEXT.fullmatch(text.strip())
        if not match:
            hint = ""
            if re.fullmatch(r"[+-]?\d+(\.\d+)?", text.strip()):
                hint = f"a bare number is ambiguous, write '{text.strip()}%';"
            raise cls._error(text, hint)
        try:
            return cls(_decimal(match.group(1)).normalize())
        except _TooManyDigits:
            raise cls._digits_error(text) from None

    @classmethod
    def _from_number(cls, value: object) -> Percent:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise cls._error(value, f"a bare number is ambiguous, write '{value}%';")
        raise cls._error(value)

    @property
    def fraction(self) -> float:
        """The share as a float in the usual 0..1 scale (``20%`` -> 0.2)."""
        return float(self.percent / 100)

    def __str__(self) -> str:
        return f"{_plain(self.percent)}%"
