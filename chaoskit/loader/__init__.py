"""Experiment and policy files (YAML, JSON, TOML) to models, with errors people can act on.

Every problem names ``file:line:column``, the field path and what is expected; all problems
of a file are reported together. YAML is read with the safe loader only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..model import Experiment, InconsistentExperiment
from ..model.variables import (
    PlaceholderError,
    Substitution,
    Variable,
    is_placeholder,
    resolve_variables,
    substitute,
)
from .documents import EXTENSIONS, Document, read_document, value_at
from .errors import LoadError, Path_, Problem
from .explain import UNKNOWN_KEY, explain, sort_problems
from .salvage import Salvage, salvage
from .strict import validate_strictly

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

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path | str, model: type[M]) -> M:
    """Load a file as ``model`` (no variables); raises :class:`LoadError`."""
    doc = read_document(Path(path), keep_content_problems=True)
    if not isinstance(doc.data, dict):
        raise LoadError([Problem(doc.file, 1, 1, (), "expected a mapping of keys at the top")])
    try:
        loaded = validate_strictly(model, doc.data, doc.data)
    except ValidationError as exc:
        raise LoadError(sort_problems(doc.content_problems + explain(doc, exc, model))) from None
    if doc.content_problems:
        raise LoadError(doc.content_problems)
    return loaded


def load_experiment(
    path: Path | str,
    *,
    variables: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Experiment:
    """Load, substitute and validate an experiment file; raises :class:`LoadError`.

    ``variables`` are ``--var NAME=VALUE`` overrides; ``environ`` defaults to ``os.environ``.
    """
    doc = read_document(Path(path), keep_content_problems=True)
    environ = os.environ if environ is None else environ
    if not isinstance(doc.data, dict):
        raise LoadError(
            [
                Problem(
                    doc.file, 1, 1, (), "expected a mapping of keys at the top (name:, faults: ...)"
                )
            ]
        )

    def located(path: Path_, message: str) -> Problem:
        line, col = doc.where(path)
        return Problem(doc.file, line, col, path, message, beyond_schema=True)

    declared, broken = _declared_variables(doc.data.get("variables") or {})
    unfilled: list[PlaceholderError] = _placeholder_tags(doc.data)
    values = resolve_variables(declared, variables or {}, environ, errors=unfilled)
    context = Substitution(values, environ, frozenset(declared) - set(values) | broken)
    data = substitute(doc.data, context, errors=unfilled)
    substituted = Document(doc.file, data, doc.marks)
    first = {e.path: e for e in reversed(unfilled)}  # one problem per place: the first found
    unfilled_problems = [
        dataclasses.replace(located(e.path, str(e)), beyond_schema=not isinstance(e, _TagError))
        for e in unfilled
        if first[e.path] is e
    ]
    found: list[Problem] = []
    partial: Salvage | None = None
    try:
        experiment = validate_strictly(Experiment, data, doc.data)
    except ValidationError as exc:
        found += [_from_placeholder(p, doc.data) for p in explain(substituted, exc, Experiment)]
        partial = salvage(data, exc)
        found += [located(p.path, p.message) for p in partial.problems()]
    except InconsistentExperiment as exc:
        found += [located(p.path, p.message) for p in exc.problems]
    else:
        if not (unfilled_problems or doc.content_problems):
            return experiment
    # a placeholder that could not be filled is the problem at its place, not what follows;
    # but where the key itself is unknown, or the place wants a list or mapping, that is
    unknown = {p.path for p in found if p.message.startswith(UNKNOWN_KEY) or p.shape}
    problems = doc.content_problems + [
        p for p in unfilled_problems if not any(p.path[: len(u)] == u for u in unknown)
    ]
    problems += [
        p for p in found if p.path in unknown or not any(p.path[: len(at)] == at for at in first)
    ]
    raise LoadError(sort_problems(problems), partial if partial and partial.whole else None)


class _TagError(PlaceholderError):
    """A placeholder where the file's shape is decided (the JSON Schema refuses it too)."""


def _placeholder_tags(data: dict[str, Any]) -> list[PlaceholderError]:
    """Placeholders in ``version`` or in the words that say what an entry is (a fault's
    ``type``, a metric's ``of``, a probe's ``type``, a target's ``kind``): refused, since the
    file's shape must be readable before any value is filled in."""
    places: list[Path_] = [("version",)]
    for section, tag in (("faults", "type"), ("steady_state", "of")):
        items = data.get(section)
        if isinstance(items, list):
            places += [(section, i, tag) for i in range(len(items))]
            places += [(section, i, "probe", "type") for i in range(len(items))]
    targets = data.get("targets")
    if isinstance(targets, dict):
        places += [("targets", key, "kind") for key in targets]
    written = {place: value_at(data, place) for place in places}
    return [
        _TagError(
            f"'{value}': a placeholder cannot decide {place[-1]!r}, which says what this entry "
            "is: write the word itself",
            place,
        )
        for place, value in written.items()
        if isinstance(value, str) and "${" in value
    ]


def _from_placeholder(problem: Problem, written: Any) -> Problem:
    """A value a placeholder gave is beyond the JSON Schema, which sees only ``${...}``."""
    about_the_value = not (problem.message.startswith(UNKNOWN_KEY) or problem.shape)
    if about_the_value and is_placeholder(value_at(written, problem.path)):
        return dataclasses.replace(problem, beyond_schema=True)
    return problem


def _declared_variables(raw: object) -> tuple[dict[str, Variable], frozenset[str]]:
    """The valid entries of the ``variables`` section, read before anything is substituted,
    and the names of the invalid ones (Experiment validation reports those)."""
    shorthand = Experiment._variable_shorthand(raw)
    if not isinstance(shorthand, dict):
        return {}, frozenset()
    adapter: TypeAdapter[Variable] = TypeAdapter(Variable)
    valid, broken = {}, set()
    for name, entry in shorthand.items():
        try:
            valid[name] = adapter.validate_python(entry, strict=True)
        except ValidationError:
            broken.add(str(name))
    return valid, frozenset(broken)


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
