"""JSON the way the Go server writes and reads it, so clients see byte-identical bodies.

Written by hand because the standard encoder can neither print float32 values the way Go does
(``1`` not ``1.0``, shortest float32 digits) nor escape ``<>&`` as Go's HTML-safe encoder does;
the decoder helpers mimic Go's struct decoding (case-insensitive keys, strict integer fields).
"""

from __future__ import annotations

import json
import re
import struct
from decimal import Decimal
from itertools import accumulate
from typing import Any

__all__ = [
    "DecodeError",
    "Float32",
    "decode_value",
    "encode",
    "field",
    "float32",
    "parse_body",
]

_INT64 = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = 3.4028234663852886e38
MAX_DEPTH = 100
"""Deepest nesting of arrays and objects a body may have; no API body needs more than six."""
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)  # unterminated: to the end, in one go
_BRACKETS = re.compile(r"[^\[\]{}]+")
_NESTING = str.maketrans({"[": "1", "{": "1", "]": "0", "}": "0"})
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_LONGEST_INT = 4000
"""Digits beyond which an integer is read as a float (Python refuses to convert > 4300)."""


class DecodeError(ValueError):
    """A request body that Go's decoder would have refused; the message says why."""


class Float32(float):
    """A float32 value: printed in JSON with Go's shortest float32 digits."""


def float32(value: float) -> Float32:
    """``value`` rounded to the nearest float32, as Go stores a ``float32`` field."""
    return Float32(struct.unpack("f", struct.pack("f", value))[0])


def _format_float32(value: float) -> str:
    if value == 0:
        return "0"
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if float32(float(text)) == value:
            break
    number = Decimal(text)
    if 1e-6 <= abs(value) < 1e21:
        out = format(number, "f")
        return out.rstrip("0").rstrip(".") if "." in out else out
    mantissa, _, exponent = f"{number:e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0').zfill(2)}"


def _string(value: str) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def encode(value: Any) -> str:
    """Compact JSON as Go's ``json.Marshal`` prints it (dict order is kept as given)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Float32):
        return _format_float32(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _depth(text: str) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest (strings do not count)."""
    brackets = _BRACKETS.sub("", _STRING.sub("", text)).translate(_NESTING)
    return max(accumulate(1 if step == "1" else -1 for step in brackets), default=0)


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"invalid character '{name[0]}' looking for beginning of value")


def _integer(text: str) -> int | float:
    return int(text) if len(text) <= _LONGEST_INT else float(text)


def _replace_surrogates(value: Any) -> Any:
    """``value`` with lone UTF-16 surrogates replaced by U+FFFD, as Go's decoder does."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def parse_body(body: bytes) -> Any:
    """The first JSON value of a body; like Go's ``Decoder.Decode``, trailing text is ignored.

    Stricter than Python's decoder where Go is: no ``NaN`` or ``Infinity``, lone surrogates
    become U+FFFD; and nesting deeper than :data:`MAX_DEPTH` is refused before decoding.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodeError(f"invalid UTF-8: {error.reason}") from None
    text = text.lstrip(" \t\r\n")
    if not text:
        raise DecodeError("EOF")
    if _depth(text) > MAX_DEPTH:
        raise DecodeError(f"exceeded max depth: arrays and objects nest over {MAX_DEPTH} deep")
    decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_integer)
    try:
        value, _ = decoder.raw_decode(text)
    except json.JSONDecodeError as error:
        raise DecodeError(error.msg.lower()) from None
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_surrogates(value)
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def decode_value(value: Any, kind: str, where: str) -> Any:
    """``value`` decoded into a Go field of ``kind`` (string, bool, int64, int, float32)."""

    def refuse(shown: str) -> DecodeError:
        return DecodeError(
            f"json: cannot unmarshal {shown} into Go struct field {where} of type {kind}"
        )

    if kind == "string":
        if not isinstance(value, str):
            return _raise(refuse(_kind(value)))
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            return _raise(refuse(_kind(value)))
        return value
    if kind in ("int64", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            shown = f"number {value}" if isinstance(value, float) else _kind(value)
            return _raise(refuse(shown))
        if not _INT64[0] <= value <= _INT64[1]:
            return _raise(refuse(f"number {value}"))
        return value
    if kind == "float32":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _raise(refuse(_kind(value)))
        if abs(value) > _FLOAT32_MAX:
            return _raise(refuse(f"number {value}"))
        return float32(float(value))
    raise ValueError(f"unknown kind {kind}")


def _raise(error: DecodeError) -> Any:
    raise error


def field(obj: dict[str, Any], name: str) -> tuple[bool, Any]:
    """Whether ``obj`` sets the field ``name`` (Go matches keys case-insensitively), and to what.

    A ``null`` counts as not set, as Go leaves the field alone.
    """
    if name in obj:
        value = obj[name]
    else:
        for key, candidate in obj.items():
            if key.lower() == name:
                value = candidate
                break
        else:
            return False, None
    return value is not None, value
