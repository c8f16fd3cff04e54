"""Reading YAML, JSON and TOML into plain data, remembering where each value was written."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import LoadError, Path_, Problem

__all__ = ["EXTENSIONS", "MAX_VALUES", "Document", "read_document"]

EXTENSIONS = (".yaml", ".yml", ".json", ".toml")
"""File types chaoskit reads."""


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
"""The safe loader; libyaml's when present (several times faster)."""


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for positions) and the plain data built from it."""
    loader = _SafeLoader(text)
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
            yield from _compose_marks(value_node, (*path, key), marks)
            # a key's own position beats its value's: "unknown key" and "missing" point here
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
        node, data = _compose_and_construct(text)
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
