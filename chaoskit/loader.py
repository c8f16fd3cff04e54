"""Experiment and policy files (YAML, JSON, TOML) to models, with errors people can act on.

Every problem names ``file:line:column``, the field path and what is expected; all problems
of a file are reported together. YAML is read with the safe loader only.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from .model import Experiment, InconsistentExperiment
from .model.variables import (
    PlaceholderError,
    Substitution,
    Variable,
    resolve_variables,
    substitute,
)

__all__ = [
    "EXTENSIONS",
    "LoadError",
    "Problem",
    "find_files",
    "load_experiment",
    "load_model",
    "locate",
    "read_document",
]

EXTENSIONS = (".yaml", ".yml", ".json", ".toml")
"""File types chaoskit reads."""

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, where it is, and what to do."""

    file: str
    line: int
    column: int
    path: Path_
    message: str

    @property
    def field(self) -> str:
        """The field path as people write it: ``faults[0].latency``."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class LoadError(Exception):
    """A file that cannot be loaded; ``problems`` lists everything wrong with it."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# ---------------------------------------------------------------------------------------------
# Reading documents and remembering where each value was written


@dataclass
class Document:
    """A parsed file: plain data plus the position of every value by its path."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]]

    def where(self, path: Path_) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest written ancestor."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return (1, 1)


_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _MarkingLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """The safe loader (libyaml's when present: several times faster)."""


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for positions) and the plain data built from it."""
    loader = _MarkingLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def _compose_marks(
    node: yaml.Node, path: Path_, marks: dict[Path_, tuple[int, int]]
) -> Iterator[Problem]:
    marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                yield Problem(
                    "",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                    (*path, key),
                    f"duplicate key '{key}' (first on line {seen[key]}): remove one of them",
                )
            seen.setdefault(key, key_node.start_mark.line + 1)
            marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            yield from _compose_marks(value_node, (*path, key), marks)
            marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _compose_marks(item, (*path, i), marks)


MAX_VALUES = 100_000
"""Refuse documents with more values than this after alias expansion ("billion laughs")."""


def _too_big(data: Any) -> bool:
    count, stack = 0, [data]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _read_yaml(file: str, text: str) -> Document:
    try:
        node = yaml.compose(text, Loader=_MarkingLoader)
        data = yaml.load(text, Loader=_MarkingLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        rows = text.splitlines()
        if mark and mark.line < len(rows) and "${" in rows[mark.line]:
            what += ' (inside {...} or [...], quote values that hold ${...}: "${vars.x}")'
        raise LoadError([Problem(file, line, col, (), f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise LoadError([Problem(file, 1, 1, (), f"not valid YAML: {exc}")]) from None
    if _too_big(data):
        message = (
            f"too large: more than {MAX_VALUES} values once aliases are expanded "
            "(an experiment file never needs that many; check anchors and aliases)"
        )
        raise LoadError([Problem(file, 1, 1, (), message)])
    marks: dict[Path_, tuple[int, int]] = {}
    if node is not None:
        dupes = [
            Problem(file, p.line, p.column, p.path, p.message)
            for p in _compose_marks(node, (), marks)
        ]
        if dupes:
            raise LoadError(dupes)
    return Document(file, data, marks)


def _read_json(file: str, text: str) -> Document:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(
            [Problem(file, exc.lineno, exc.colno, (), f"not valid JSON: {exc.msg}")]
        ) from None
    marks: dict[Path_, tuple[int, int]] = {}
    try:  # JSON is YAML's flow style: the YAML composer gives positions for free
        node, _ = _compose_and_construct(text)
        if node is not None:
            list(_compose_marks(node, (), marks))
    except yaml.YAMLError:
        pass  # positions are a courtesy; the data came from the JSON parser
    return Document(file, data, marks)


_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.\s]+?)\s*=")


def _toml_key(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def _read_toml(file: str, text: str) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise LoadError([Problem(file, line, col, (), f"not valid TOML: {message}")]) from None
    # tomllib keeps no positions; a line scan finds tables and keys (inline tables excepted).
    marks: dict[Path_, tuple[int, int]] = {}
    table: list[str | int] = []
    arrays: dict[tuple[str | int, ...], int] = {}
    for number, row in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(row)
        if header:
            keys: list[str | int] = list(_toml_key(header.group(2)))
            if header.group(1) == "[[":
                index = arrays.get(tuple(keys), -1) + 1
                arrays[tuple(keys)] = index
                keys.append(index)
            table = keys
            marks.setdefault(tuple(table), (number, row.index("[") + 1))
            continue
        key = _TOML_KEY.match(row)
        if key and not row.lstrip().startswith("#"):
            path = (*table, *_toml_key(key.group(1)))
            marks.setdefault(path, (number, len(row) - len(row.lstrip()) + 1))
    return Document(file, data, marks)


def read_document(path: Path) -> Document:
    """Parse a YAML, JSON or TOML file into plain data with positions."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadError([Problem(file, 1, 1, (), "no such file")]) from None
    except IsADirectoryError:
        raise LoadError([Problem(file, 1, 1, (), "is a folder, not a file")]) from None
    except UnicodeDecodeError as exc:
        raise LoadError([Problem(file, 1, 1, (), f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise LoadError([Problem(file, 1, 1, (), f"cannot be read: {exc.strerror}")]) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(file, text)
    if suffix == ".toml":
        return _read_toml(file, text)
    if suffix in (".yaml", ".yml"):
        return _read_yaml(file, text)
    raise LoadError(
        [Problem(file, 1, 1, (), f"unknown file type '{suffix}': use {', '.join(EXTENSIONS)}")]
    )


# ---------------------------------------------------------------------------------------------
# Validation errors to problems


def _doc_path(data: Any, loc: tuple[str | int, ...]) -> Path_:
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
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _message(error: Any, doc: Document, path: Path_, schema: dict[str, Any]) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _schema_keys(schema, doc.data, path[:-1])
        hint = _did_you_mean(key, allowed)
        listed = f" (allowed here: {', '.join(allowed)})" if allowed and not hint else ""
        return f"unknown key '{key}'{hint}{listed}"
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
        return f"{error.get('input')!r} is not valid here: expected {what}"
    if msg.startswith("Input should be"):
        return f"{msg.replace('Input should be', 'expected', 1)}, got {error.get('input')!r}"
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        msg = msg.split(", ", 1)[1]
    text = str(error.get("input"))
    if "${ports." in text or "${run." in text:
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


def _problems_of(
    doc: Document, exc: ValidationError, model: type[BaseModel], prefix: Path_ = ()
) -> list[Problem]:
    schema = model.model_json_schema()  # for did-you-mean; only computed when there are errors
    problems = []
    for error in exc.errors(include_url=False):
        path = _doc_path(doc.data, (*prefix, *error["loc"]))
        line, col = doc.where(path)
        problems.append(Problem(doc.file, line, col, path, _message(error, doc, path, schema)))
    return problems


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line, p.column))


# ---------------------------------------------------------------------------------------------
# Public entry points


def load_model(path: Path | str, model: type[M]) -> M:
    """Load a file as ``model`` (no variables); raises :class:`LoadError`."""
    doc = read_document(Path(path))
    if not isinstance(doc.data, dict):
        raise LoadError([Problem(doc.file, 1, 1, (), "expected a mapping of keys at the top")])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise LoadError(_sorted(_problems_of(doc, exc, model))) from None


def load_experiment(
    path: Path | str,
    *,
    variables: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Experiment:
    """Load, substitute and validate an experiment file; raises :class:`LoadError`.

    ``variables`` are ``--var NAME=VALUE`` overrides; ``environ`` defaults to ``os.environ``.
    """
    doc = read_document(Path(path))
    environ = os.environ if environ is None else environ
    if not isinstance(doc.data, dict):
        raise LoadError(
            [
                Problem(
                    doc.file, 1, 1, (), "expected a mapping of keys at the top (name:, faults: ...)"
                )
            ]
        )

    def placeholder_problem(exc: PlaceholderError) -> LoadError:
        line, col = doc.where(exc.path)
        return LoadError([Problem(doc.file, line, col, exc.path, str(exc))])

    try:
        declared = _declared_variables(doc.data.get("variables") or {})
    except ValidationError as exc:
        found = _problems_of(doc, exc, Experiment, prefix=("variables",))
        raise LoadError(_sorted(found)) from None
    try:
        values = resolve_variables(declared, variables or {}, environ)
        data = substitute(doc.data, Substitution(values, environ))
    except PlaceholderError as exc:
        raise placeholder_problem(exc) from None
    substituted = Document(doc.file, data, doc.marks)
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise LoadError(_sorted(_problems_of(substituted, exc, Experiment))) from None
    except InconsistentExperiment as exc:
        problems = []
        for p in exc.problems:
            line, col = doc.where(p.path)
            problems.append(Problem(doc.file, line, col, p.path, p.message))
        raise LoadError(_sorted(problems)) from None


def _declared_variables(raw: object) -> dict[str, Variable]:
    """Validate the ``variables`` section on its own, before anything is substituted."""
    shorthand = Experiment._variable_shorthand(raw)
    adapter: TypeAdapter[dict[str, Variable]] = TypeAdapter(dict[str, Variable])
    return adapter.validate_python(shorthand)


def locate(file: Path | str, found: list[tuple[Path_, str]]) -> list[Problem]:
    """Problems for messages about fields of ``file`` (e.g. policy violations), with positions."""
    try:
        doc = read_document(Path(file))
    except LoadError:
        doc = Document(str(file), None, {})
    return [Problem(doc.file, *doc.where(path), path, message) for path, message in found]


def find_files(paths: list[Path]) -> Iterator[Path]:
    """Every experiment file under ``paths`` (folders searched recursively, sorted)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
        else:
            yield path
