"""Reading YAML, JSON and TOML into plain data, remembering where each value was written."""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.constructor import ConstructorError

from .errors import LoadError, Path_, Problem

__all__ = ["EXTENSIONS", "MAX_DEPTH", "MAX_VALUES", "Document", "read_document", "value_at"]

EXTENSIONS = (".yaml", ".yml", ".json", ".toml")
"""File types chaoskit reads."""


@dataclass
class Document:
    """A parsed file: plain data plus the position of every value by its path."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]]
    content_problems: list[Problem] = field(default_factory=list)
    """Values no chaoskit file holds (control characters, NaN, huge numbers), each located."""

    def where(self, path: Path_) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest written ancestor."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return (1, 1)


MAX_DEPTH = 100
"""Refuse documents nested deeper than this (real files are a handful of levels deep)."""
MAX_VALUES = 100_000
"""Refuse documents with more values than this after alias expansion ("billion laughs")."""
MAX_INT = 2**63 - 1
"""Whole numbers beyond 64 bits are refused: nothing in a file needs them."""
_MAX_PROBLEMS = 20
"""At most this many content problems (control characters, NaN...) are listed per file."""

if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:  # libyaml's safe loader when present (several times faster)
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG_WORDS = {
    "tag:yaml.org,2002:int": "a whole number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "base64 data",
}


def _short(text: object, size: int = 40) -> str:
    """``text`` as str, cut to ``size`` characters for messages."""
    shown = str(text) if not isinstance(text, int) or abs(text) < 10**size else "<huge number>"
    return shown if len(shown) <= size else shown[: size - 3] + "..."


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why a scalar with a YAML type (``2024-02-30``, ``!!int 0x``) could not be built."""
    what = _TAG_WORDS.get(node.tag, f"'{_short(node.tag)}'")
    value = node.value if isinstance(node, yaml.ScalarNode) else ""
    if "Exceeds the limit" in str(exc):
        reason = " (too many digits)"
    elif isinstance(exc, ValueError) and node.tag.endswith(":timestamp"):
        reason = f" ({exc})"  # e.g. "day is out of range for month"
    else:
        reason = ""
    return (
        f"'{_short(value)}' cannot be read as {what}{reason}: correct it, or quote it "
        "(without a !!tag) to use it as text"
    )


def _core_schema_resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's implicit types narrowed to YAML 1.2's core schema, as editors read files:
    ``yes``/``no``/``on``/``off`` stay text (only ``true``/``false`` are booleans), ``10:00``
    is text rather than the sexagesimal 600, and ``010`` is ten."""
    narrowed: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    bool_ = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    int_ = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
    float_ = re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    )
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = []
        for tag, pattern in resolvers:
            core = {":bool": bool_, ":int": int_, ":float": float_}.get(tag[tag.rfind(":") :])
            kept.append((tag, core or pattern))
        narrowed[first] = kept
    for first in "yYnNoO":  # yes, no, on, off: text
        narrowed[first] = [(t, p) for t, p in narrowed.get(first, []) if not t.endswith(":bool")]
    return narrowed


class _Loader(_SafeLoader):
    """The safe loader, reading YAML 1.2's core types (``on``, ``yes``, ``no`` and ``10:00``
    are text, as in editors); keys are kept as written, and a value that cannot be built
    (``2024-02-30``, ``!!int '0x'``) is a located YAML error."""

    yaml_implicit_resolvers = _core_schema_resolvers()

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """Integers as YAML 1.2 writes them: ``0o17`` octal, ``010`` decimal, no ``_``."""
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, AttributeError, TypeError, IndexError, OverflowError) as exc:
            # PyYAML's scalar constructors fail with plain exceptions on bad text
            raise ConstructorError(None, None, _unreadable(node, exc), node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)  # raises "expected a mapping node"
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConstructorError(
                    None,
                    None,
                    "a key must be plain text, not a list or a mapping",
                    key_node.start_mark,
                )
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _too_deep(file: str, line: int, col: int, path: Path_) -> LoadError:
    message = (
        f"nested more than {MAX_DEPTH} levels deep: chaoskit files need only a few levels, "
        "flatten this (or check anchors and aliases that include themselves)"
    )
    return LoadError([Problem(file, line, col, path, message)])


def _check_yaml_depth(file: str, text: str) -> None:
    """Refuse deep nesting from the event stream, before anything recurses over it."""
    loader = _Loader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
            if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    mark = event.start_mark
                    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                    raise _too_deep(file, line, col, ())
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once: the node tree (for positions) and the plain data built from it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def _compose_marks(node: yaml.Node, marks: dict[Path_, tuple[int, int]]) -> list[Problem]:
    """Fill ``marks`` with the position of every value; duplicate keys come back as problems.

    Iterative and bounded by depth and count, so aliases cannot make it recurse or loop."""
    dupes: list[Problem] = []
    stack: list[tuple[yaml.Node, Path_]] = [(node, ())]
    visited = 0
    while stack and visited <= MAX_VALUES:
        node, path = stack.pop()
        visited += 1
        marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if len(path) > MAX_DEPTH:
            continue
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                if key in seen:
                    dupes.append(
                        Problem(
                            "",
                            line,
                            col,
                            (*path, key),
                            f"duplicate key '{_short(key)}' (first on line {seen[key]}): "
                            "remove one of them",
                        )
                    )
                seen.setdefault(key, line)
                # a key's own position beats its value's: "unknown key" and "missing" point here
                marks[(*path, key)] = (line, col)
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return sorted(dupes, key=lambda p: (p.line, p.column))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""Characters refused in text: control characters but tab and line ends, lone surrogates."""


def _text_problem(text: str) -> str | None:
    found = _CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    if "\ud800" <= char <= "\udfff":
        return f"text holds U+{ord(char):04X}, half of a surrogate pair (not Unicode): remove it"
    name = " (NUL)" if char == "\0" else ""
    return f"text holds the control character U+{ord(char):04X}{name}: remove it"


def _value_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        said = "NaN" if math.isnan(value) else "infinite (or too large, like 1e400)"
        return f"the number is {said}: no limit can be checked against it, write a finite number"
    if isinstance(value, int) and abs(value) > MAX_INT:
        return f"the number is too large: write one between -{MAX_INT} and {MAX_INT}"
    if isinstance(value, bytes):
        return "binary data (!!binary) is not used in chaoskit files: write text"
    return None


def _content_problems(data: Any) -> list[tuple[Path_, str]]:
    """Walk the data once, without recursion: raise when it is too large once aliases are
    expanded; else list values no file should hold (NaN, control characters, too deep...)."""
    found: list[tuple[Path_, str]] = []
    count = 0
    stack: list[tuple[Any, Path_]] = [(data, ())]
    while stack and len(found) < _MAX_PROBLEMS:
        item, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise _TooBig
        if isinstance(item, dict):
            if len(path) >= MAX_DEPTH and item:
                found.append((path, "deep"))
                continue
            for key, value in item.items():
                problem = _text_problem(key) if isinstance(key, str) else None
                if problem is not None:
                    found.append(((*path, key), f"the key {problem}"))
                stack.append((value, (*path, key)))
        elif isinstance(item, list | tuple | set | frozenset):
            if len(path) >= MAX_DEPTH and item:
                found.append((path, "deep"))
                continue
            stack.extend((value, (*path, i)) for i, value in enumerate(item))
        else:
            problem = _value_problem(item)
            if problem is not None:
                found.append((path, problem))
    return found


def value_at(data: Any, path: Path_) -> Any:
    """The value at ``path`` in ``data``; None where there is none."""
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _huge(value: Any) -> bool:
    """A whole number Python cannot even print (validation messages quote their input)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT


class _TooBig(Exception):
    """More than MAX_VALUES values once aliases are expanded."""


def _checked(file: str, data: Any, marks: dict[Path_, tuple[int, int]]) -> Document:
    """The document, once its content passes :func:`_content_problems`."""
    doc = Document(file, data, marks)
    problems, fatal = [], False
    for path, message in _content_problems(data):
        line, col = doc.where(path)
        if message == "deep":  # the path is 100 parts long: its start says where
            problems.extend(_too_deep(file, line, col, path[:4]).problems)
            fatal = True
        else:
            problems.append(Problem(file, line, col, path, message, beyond_schema=True))
            fatal = fatal or _huge(value_at(data, path))
    if fatal:  # nothing further can safely read the data: say this much and stop
        raise LoadError(sorted(problems, key=lambda p: (p.line, p.column)))
    doc.content_problems = sorted(problems, key=lambda p: (p.line, p.column))
    return doc


def _too_large(file: str) -> LoadError:
    message = (
        f"too large: more than {MAX_VALUES} values once aliases are expanded "
        "(an experiment file never needs that many; check anchors and aliases)"
    )
    return LoadError([Problem(file, 1, 1, (), message)])


def _read_yaml(file: str, text: str) -> Document:
    try:
        _check_yaml_depth(file, text)
        node, data = _compose_and_construct(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        rows = text.splitlines()
        if mark and mark.line < len(rows) and "${" in rows[mark.line]:
            what += ' (inside {...} or [...], quote values that hold ${...}: "${vars.x}")'
        raise LoadError([Problem(file, line, col, (), f"not valid YAML: {what}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses, e.g. NUL
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        what = (
            f"the character U+{exc.character:04X} is not allowed in YAML: remove it"
            if isinstance(exc.character, int)
            else str(exc)
        )
        raise LoadError([Problem(file, line, col, (), f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise LoadError([Problem(file, 1, 1, (), f"not valid YAML: {exc}")]) from None
    try:
        _content_problems(data)  # alias bombs first: the marks walk expands aliases too
    except _TooBig:
        raise _too_large(file) from None
    marks: dict[Path_, tuple[int, int]] = {}
    if node is not None:
        dupes = [
            Problem(file, p.line, p.column, p.path, p.message) for p in _compose_marks(node, marks)
        ]
        if dupes:
            raise LoadError(dupes)
    return _checked(file, data, marks)


_JSON_NESTING = re.compile(r'"(?:[^"\\]++|\\.)*+"|[\[\]{}]')
"""Strings (skipped) and brackets, to measure nesting before the recursive JSON parser runs."""


def _check_json_depth(file: str, text: str) -> None:
    depth = 0
    for token in _JSON_NESTING.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                start = token.start()
                line = text.count("\n", 0, start) + 1
                raise _too_deep(file, line, start - text.rfind("\n", 0, start), ())
        elif char in "]}":
            depth -= 1


class _LongNumber(Exception):
    """A JSON number with too many digits for Python to read."""


def _json_int(text: str) -> int:
    if len(text) > 100:  # Python refuses int() beyond 4300 digits; 64 bits is 19
        raise _LongNumber(text)
    return int(text)


def _read_json(file: str, text: str) -> Document:
    _check_json_depth(file, text)
    try:
        data = json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise LoadError(
            [Problem(file, exc.lineno, exc.colno, (), f"not valid JSON: {exc.msg}")]
        ) from None
    except _LongNumber as exc:
        start = text.find(str(exc))
        line = text.count("\n", 0, start) + 1
        message = f"the number {_short(exc)} is too large: write one of at most 19 digits"
        raise LoadError(
            [Problem(file, line, start - text.rfind("\n", 0, start), (), message)]
        ) from None
    try:
        _content_problems(data)
    except _TooBig:
        raise _too_large(file) from None
    marks: dict[Path_, tuple[int, int]] = {}
    loader = _Loader(text)
    try:  # JSON is YAML's flow style: the YAML composer gives positions for free
        node = loader.get_single_node()
        dupes = _compose_marks(node, marks) if node is not None else []
    except yaml.YAMLError:
        dupes = []  # positions are a courtesy; the data came from the JSON parser
    finally:
        loader.dispose()
    if dupes:
        raise LoadError([Problem(file, p.line, p.column, p.path, p.message) for p in dupes])
    return _checked(file, data, marks)


_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.\s]+?)\s*=")


def _toml_key(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def _read_toml(file: str, text: str) -> Document:
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(file, 1, 1, ()) from None
    except ValueError as exc:
        if not isinstance(exc, tomllib.TOMLDecodeError):  # int() of a number too long
            message = "not valid TOML: a number has too many digits (at most 19)"
            raise LoadError([Problem(file, 1, 1, (), message)]) from None
        found = re.search(r"line (\d+), column (\d+)", str(exc))
        line, col = (int(found.group(1)), int(found.group(2))) if found else (1, 1)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise LoadError([Problem(file, line, col, (), f"not valid TOML: {message}")]) from None
    try:
        _content_problems(data)
    except _TooBig:
        raise _too_large(file) from None
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
    return _checked(file, data, marks)


def read_document(path: Path, *, keep_content_problems: bool = False) -> Document:
    """Parse a YAML, JSON or TOML file into plain data with positions. Values no file should
    hold raise a LoadError, or with ``keep_content_problems`` are left in the document's
    ``content_problems``, so that a loader can report them with every other problem."""
    doc = _read_document(path)
    if doc.content_problems and not keep_content_problems:
        raise LoadError(doc.content_problems)
    return doc


def _read_document(path: Path) -> Document:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LoadError([Problem(file, 1, 1, (), "no such file")]) from None
    except IsADirectoryError:
        raise LoadError([Problem(file, 1, 1, (), "is a folder, not a file")]) from None
    except OSError as exc:
        raise LoadError([Problem(file, 1, 1, (), f"cannot be read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark some editors write is dropped
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - raw.rfind(b"\n", 0, exc.start)
        message = f"not UTF-8 text ({exc.reason}): save the file as UTF-8"
        raise LoadError([Problem(file, line, col, (), message)]) from None
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
