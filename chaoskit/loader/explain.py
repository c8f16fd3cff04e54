"""Pydantic's validation errors as problems people can act on: located, with the document's
field path, plain wording and a did-you-mean for misspelt keys and tags."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from ..model._base import BEYOND_SCHEMA, close_match
from .documents import Document
from .errors import Path_, Problem

__all__ = ["UNKNOWN_KEY", "doc_path", "explain", "sort_problems"]

UNKNOWN_KEY = "unknown key"
"""How the message about a key the schema does not know begins."""


def doc_path(data: Any, loc: tuple[str | int, ...]) -> Path_:
    """Map a pydantic error location onto the document, dropping union tags and the like."""
    path: list[str | int] = []
    node = data
    tag_seen = False  # a union's tag comes first, and may equal a field name ('latency')
    for part in loc:
        if not tag_seen and isinstance(node, dict) and _is_union_tag(node, part):
            tag_seen = True
            continue
        if _has(node, part):
            path.append(part)
            node = node[part]
            tag_seen = False
        elif _is_key(node, part):
            path.append(part)  # a missing or unknown key: point at it by name
            node = None
        # anything else is a validator or union tag in the location, not part of the file
    return tuple(path)


def _is_key(node: Any, part: str | int) -> bool:
    """A location part that names a key absent from ``node`` (not a union tag or validator)."""
    return (
        isinstance(node, dict)
        and isinstance(part, str)
        and not _is_union_tag(node, part)
        and not part.startswith(("function-", "json-or-python"))
    )


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _is_union_tag(node: dict[str, Any], part: str | int) -> bool:
    return any(node.get(tag) == part for tag in ("type", "of", "kind"))


def _schema_keys(schema: dict[str, Any], data: Any, path: Path_) -> list[str]:
    """The keys the schema allows at ``path``, choosing union branches by the data's tags."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def branches(node: dict[str, Any], value: Any) -> list[dict[str, Any]]:
        node = resolve(node)
        options = node.get("oneOf") or node.get("anyOf")
        if not options:
            return [node]
        chosen: list[dict[str, Any]] = []
        for option in options:
            for sub in branches(option, value):
                props = sub.get("properties", {})
                tags = [t for t in ("type", "of", "kind") if "const" in props.get(t, {})]
                if (
                    isinstance(value, dict)
                    and tags
                    and value.get(tags[0]) != props[tags[0]]["const"]
                ):
                    continue
                chosen.append(sub)
        return chosen

    nodes, value = [schema], data
    for part in path:
        nxt: list[dict[str, Any]] = []
        for node in nodes:
            for branch in branches(node, value):
                if isinstance(part, int) and "items" in branch:
                    nxt.append(branch["items"])
                elif isinstance(part, str) and part in branch.get("properties", {}):
                    nxt.append(branch["properties"][part])
                elif isinstance(part, str) and isinstance(branch.get("additionalProperties"), dict):
                    nxt.append(branch["additionalProperties"])
                elif isinstance(part, str) and "patternProperties" in branch:
                    nxt += [
                        sub
                        for pattern, sub in branch["patternProperties"].items()
                        if re.search(pattern, part)
                    ]
        nodes = nxt
        if isinstance(value, dict):
            value = value.get(part) if isinstance(part, str) else None
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            value = None
    keys: set[str] = set()
    for node in nodes:
        for branch in branches(node, value):
            keys.update(branch.get("properties", {}))
    return sorted(keys)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = close_match(word, options)
    return f"; did you mean '{close}'?" if close is not None else ""


def _shown(value: Any) -> str:
    """``value`` as Python writes it, cut short: messages quote what was written, not 1MB."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        return "<a number of more than 60 digits>"
    text = repr(value)
    return text if len(text) <= 80 else text[:76] + "..." + text[-1]


def _message(error: Any, doc: Document, path: Path_, schema: dict[str, Any]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "finite_number":
        return (
            f"expected a finite number, got {_shown(error.get('input'))}: a limit or value of "
            "NaN or infinity can never be compared, write a number"
        )
    if kind == "bool_type" and str(error.get("input")).lower() in _YAML11_BOOLS:
        return (
            f"expected true or false, got {_shown(error.get('input'))}: chaoskit reads YAML 1.2, "
            "as editors do, where yes, no, on and off are text; write true or false"
        )
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _schema_keys(schema, doc.data, path[:-1])
        hint = _did_you_mean(key, allowed)
        listed = f" (allowed here: {', '.join(allowed)})" if allowed and not hint else ""
        return f"{UNKNOWN_KEY} '{key}'{hint}{listed}"
    if kind == "missing":
        return f"required field '{path[-1] if path else '?'}' is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        return (
            f"unknown {ctx.get('discriminator', 'tag').strip(chr(39))} '{ctx.get('tag')}': "
            f"expected one of {', '.join(expected)}{_did_you_mean(str(ctx.get('tag')), expected)}"
        )
    if kind == "union_tag_not_found":
        tag = str(error.get("ctx", {}).get("discriminator", "type")).strip("'")
        return f"'{tag}' is missing: it says which kind of entry this is"
    if kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        what = _PATTERN_WORDS.get(pattern, f"text matching {pattern}")
        return f"{_shown(error.get('input'))} is not valid here: expected {what}"
    if msg.startswith("Input should be"):
        return f"{msg.replace('Input should be', 'expected', 1)}, got {_shown(error.get('input'))}"
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
    text = error.get("input")
    if isinstance(text, str) and ("${ports." in text or "${run." in text):
        msg += (
            " (run-time values such as ${ports...} and ${run...} can only be used in text "
            "fields such as URLs, commands and environment values)"
        )
    return msg


_PATTERN_WORDS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$": (
        "a name of letters, digits, '_', '.' and '-' (no spaces), starting with a letter or "
        "digit, at most 63 characters"
    ),
    r"^[A-Za-z_][A-Za-z0-9_]*$": (
        "an identifier: letters, digits and '_', not starting with a digit"
    ),
    r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$": "'module.path:function'",
    r"^/": "an absolute path",
}


def explain(
    doc: Document, exc: ValidationError, model: type[BaseModel], prefix: Path_ = ()
) -> list[Problem]:
    schema = model.model_json_schema()  # for did-you-mean; only computed when there are errors
    problems = []
    for error in exc.errors(include_url=False):
        path = doc_path(doc.data, (*prefix, *error["loc"]))
        line, col = doc.where(path)
        message = _LONG_WORD.sub(_cut, _message(error, doc, path, schema))
        beyond = error["type"] == BEYOND_SCHEMA
        shape = error["type"] in _SHAPES
        problems.append(Problem(doc.file, line, col, path, message, beyond, shape))
    return _misspelt_required(problems)


_YAML11_BOOLS = frozenset({"yes", "no", "on", "off", "y", "n"})
"""Words YAML 1.1 read as true or false; YAML 1.2 reads them as text."""

_MEANT = re.compile(r"^unknown key '[^']*'; did you mean '([^']*)'\?$")


def _misspelt_required(problems: list[Problem]) -> list[Problem]:
    """``rat: 100/s`` is one problem, not two: the unknown key's did-you-mean names the
    required field said to be missing, so that one says so and the other goes."""
    meant = {}
    for problem in problems:
        found = _MEANT.match(problem.message)
        if found and problem.path:
            meant[(*problem.path[:-1], found.group(1))] = problem
    missing = {
        p.path
        for p in problems
        if p.path in meant and p.message == f"required field '{p.path[-1]}' is missing"
    }
    required = {id(meant[m]): m[-1] for m in missing}
    return [
        dataclasses.replace(p, message=f"{p.message} ('{required[id(p)]}' is required)")
        if id(p) in required
        else p
        for p in problems
        if p.path not in missing
    ]


_SHAPES = frozenset(
    {"list_type", "dict_type", "model_type", "model_attributes_type", "tuple_type", "set_type"}
)
"""Errors that say a value should have been a list or a mapping."""

_LONG_WORD = re.compile(r"\S{100,}")
"""A value quoted in a message (an unknown tag, a name...) may be a megabyte long."""


def _cut(found: re.Match[str]) -> str:
    return found.group()[:76] + "..."


def sort_problems(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line, p.column))
