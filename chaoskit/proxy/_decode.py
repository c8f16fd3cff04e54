"""Request bodies decoded into proxies and toxics with the Go server's rules and check order."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import INVALID_STREAM, INVALID_TOXIC_TYPE, TOXIC_EXISTS, ApiError
from ._json import DecodeError, Float32, decode_value, field, float32
from ._toxics import KINDS, Attributes, ToxicSpec

__all__ = ["ProxyFields", "check_name", "decode_proxy", "decode_toxic", "decode_toxic_update"]

EXTRA_TOXICS = "initial_toxics"
"""chaoskit's opt-in key: toxics applied before a new proxy accepts its first connection."""


@dataclass
class ProxyFields:
    """The fields of a proxy body; ``None`` where the body did not set one."""

    name: str | None = None
    listen: str | None = None
    upstream: str | None = None
    enabled: bool | None = None
    toxics: list[Any] | None = None


def check_name(name: str, what: str) -> None:
    """400 unless ``name`` can be one segment of a URL path, percent-encoded, and come back.

    Toxiproxy takes any non-empty name, but one with ``/``, or ``.``/``..`` (which HTTP clients
    and its router normalise away), can then never be read, changed or deleted.
    """
    if name in (".", ".."):
        problem = "is a dot segment, which HTTP clients remove from a URL path"
    elif "/" in name:
        problem = "contains '/', which splits a URL path"
    elif any(unicodedata.category(char) == "Cc" for char in name):
        problem = "contains a control character"
    else:
        return
    raise ApiError(400, f"invalid {what} name {name!r}: it {problem}; use one URL path segment")


def _object(value: Any, go_type: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        raise ApiError.bad_body(f"json: cannot unmarshal {kind} into Go value of type {go_type}")
    return value


def decode_proxy(value: Any) -> ProxyFields:
    """A proxy object from a create, update or populate body (unknown keys ignored)."""
    obj = _object(value, "proxy.Proxy")
    fields = ProxyFields()
    try:
        for name, kind in (("name", "string"), ("listen", "string"), ("upstream", "string")):
            present, raw = field(obj, name)
            if present:
                setattr(fields, name, decode_value(raw, kind, f"Proxy.{name}"))
        present, raw = field(obj, "enabled")
        if present:
            fields.enabled = decode_value(raw, "bool", "Proxy.enabled")
    except DecodeError as error:
        raise ApiError.bad_body(str(error)) from None
    extra = obj.get(EXTRA_TOXICS)
    if extra is not None:
        if not isinstance(extra, list):
            raise ApiError(400, f"{EXTRA_TOXICS} must be a list of toxics")
        fields.toxics = extra
    return fields


def _attributes(value: Any, base: Attributes, type_name: str) -> Attributes:
    """``base`` with the attribute keys ``value`` sets decoded over it (Go: into the struct)."""
    attributes = dict(base)
    if value is not None and not isinstance(value, dict):
        raise ApiError.bad_body(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            ".attributes of type toxics.Toxic"
        )
    kind = KINDS[type_name]
    try:
        for name, go_kind in kind.fields:
            present, raw = field(value or {}, name)
            if present:
                attributes[name] = decode_value(raw, go_kind, f".attributes.{name}")
    except DecodeError as error:
        raise ApiError.bad_body(str(error)) from None
    problem = kind.check(attributes)
    if problem is not None:
        raise ApiError(400, f"invalid {type_name} toxic: {problem}")
    return attributes


def decode_toxic(value: Any, taken: Callable[[str], bool]) -> ToxicSpec:
    """A new toxic, checked in the real server's order; ``taken`` says if a name is in use."""
    obj = _object(value, "toxics.ToxicWrapper")
    try:
        _, name = field(obj, "name")
        name = decode_value(name, "string", "ToxicWrapper.name") if name is not None else ""
        _, type_name = field(obj, "type")
        type_name = decode_value(type_name, "string", "ToxicWrapper.type") if type_name else ""
        present, stream = field(obj, "stream")
        stream = decode_value(stream, "string", "ToxicWrapper.stream") if present else "downstream"
        present, raw = field(obj, "toxicity")
        toxicity: Float32 = (
            decode_value(raw, "float32", "ToxicWrapper.toxicity") if present else float32(1.0)
        )
    except DecodeError as error:
        raise ApiError.bad_body(str(error)) from None
    present, attributes = field(obj, "attributes")
    if present and not isinstance(attributes, dict):
        raise ApiError.bad_body(
            "json: cannot unmarshal into Go struct field ToxicWrapper.attributes"
        )
    if stream.lower() not in ("upstream", "downstream"):
        raise ApiError(*INVALID_STREAM)
    if not name:
        name = f"{type_name}_{stream}"
    if type_name not in KINDS:
        raise ApiError(*INVALID_TOXIC_TYPE)
    check_name(name, "toxic")
    if taken(name):
        raise ApiError(*TOXIC_EXISTS)
    kind = KINDS[type_name]
    return ToxicSpec(
        name=name,
        kind=kind,
        stream=stream,
        upstream=stream.lower() == "upstream",
        toxicity=toxicity,
        attributes=_attributes(attributes, kind.defaults(), type_name),
    )


def decode_toxic_update(value: Any, spec: ToxicSpec) -> tuple[Attributes, Float32]:
    """The attributes and toxicity an update body gives ``spec``; only keys sent change."""
    obj = _object(value, "struct { Attributes interface {}; Toxicity float32 }")
    present, raw = field(obj, "toxicity")
    try:
        toxicity = decode_value(raw, "float32", ".toxicity") if present else spec.toxicity
    except DecodeError as error:
        raise ApiError.bad_body(str(error)) from None
    _, attributes = field(obj, "attributes")
    return _attributes(attributes, spec.attributes, spec.kind.name), toxicity
