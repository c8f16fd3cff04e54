"""Experiment and policy files (YAML, JSON, TOML) to models, with errors people can act on.

Every problem names ``file:line:column``, the field path and what is expected; all problems
of a file are reported together. YAML is read with the safe loader only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..model import Experiment, InconsistentExperiment
from ..model.variables import (
    PlaceholderError,
    Substitution,
    Variable,
    resolve_variables,
    substitute,
)
from .documents import EXTENSIONS, Document, read_document
from .errors import LoadError, Path_, Problem
from .explain import explain, sort_problems

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
    doc = read_document(Path(path))
    if not isinstance(doc.data, dict):
        raise LoadError([Problem(doc.file, 1, 1, (), "expected a mapping of keys at the top")])
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise LoadError(sort_problems(explain(doc, exc, model))) from None


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
        found = explain(doc, exc, Experiment, prefix=("variables",))
        raise LoadError(sort_problems(found)) from None
    try:
        values = resolve_variables(declared, variables or {}, environ)
        data = substitute(doc.data, Substitution(values, environ))
    except PlaceholderError as exc:
        raise placeholder_problem(exc) from None
    substituted = Document(doc.file, data, doc.marks)
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        raise LoadError(sort_problems(explain(substituted, exc, Experiment))) from None
    except InconsistentExperiment as exc:
        problems = []
        for p in exc.problems:
            line, col = doc.where(p.path)
            problems.append(Problem(doc.file, line, col, p.path, p.message))
        raise LoadError(sort_problems(problems)) from None


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
