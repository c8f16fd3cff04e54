"""Variables and ``${...}`` placeholders in experiment files.

The grammar, precisely:

- ``${vars.NAME}``: a variable declared under ``variables:``; its value comes from
  ``--var NAME=VALUE``, else from the environment variable it names (``env:``), else from its
  ``default``. Substituted when the file is loaded.
- ``${env.NAME}`` and ``${env.NAME:-fallback}``: the environment of ``chaoskit`` itself.
  Substituted when the file is loaded; unset without a fallback is an error.
- ``${ports.NAME}``: a port chaoskit picks for the system it starts (see ``system.ports`` and
  the reference stack's ports). ``${run.id}`` and ``${run.dir}``: the run's id and output folder.
  These are known only at run time: they stay in the text until the runner renders them, so
  they may only be used in text fields (URLs, commands, environment values, addresses).
- ``$${`` is a literal ``${``; it stays escaped in the loaded model until :func:`render`.
  Any other ``${...}`` is an error.

A string that is exactly one load-time placeholder takes the value's own type, so
``rate: ${vars.rate}`` with ``default: 100/s`` is the same as ``rate: 100/s`` and
``replicas: ${vars.n}`` with ``default: 3`` is the integer 3.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from ._base import Model

__all__ = [
    "LOAD_TIME",
    "RUN_TIME",
    "Placeholder",
    "PlaceholderError",
    "Substitution",
    "Variable",
    "find_placeholders",
    "is_placeholder",
    "render",
    "resolve_variables",
    "substitute",
]

LOAD_TIME = frozenset({"vars", "env"})
RUN_TIME = frozenset({"ports", "run"})
RUN_KEYS = frozenset({"id", "dir"})

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_INNER = re.compile(
    r"^(?P<ns>[A-Za-z_]+)\.(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)(?::-(?P<default>.*))?$"
)

Scalar = str | int | float | bool
VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Variable(Model):
    """A named value for ``${vars.NAME}``: a default, optionally overridden from the environment."""

    default: Scalar | None = None
    """The value used when neither ``--var`` nor the environment gives one."""
    env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    """An environment variable that overrides the default when it is set."""
    description: str = ""
    """What the variable is for, shown by ``chaoskit validate``."""
    choices: list[Scalar] | None = Field(default=None, min_length=1)
    """If given, the value must be one of these."""


class PlaceholderError(ValueError):
    """A ``${...}`` that cannot be parsed or resolved; ``path`` is where it sits."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Placeholder:
    """One ``${namespace.name}`` occurrence in a string."""

    namespace: str
    name: str
    default: str | None
    text: str

    @property
    def is_run_time(self) -> bool:
        """True for placeholders only the runner can fill (ports, run)."""
        return self.namespace in RUN_TIME


def find_placeholders(text: str) -> Iterator[Placeholder]:
    """Every placeholder in ``text``; raises :class:`PlaceholderError` on a malformed one."""
    for match in _TOKEN.finditer(text):
        if match.group(0) == "$${":
            continue
        inner = match.group(1)
        if inner is None:
            raise PlaceholderError(f"unclosed placeholder in '{text}': add the closing '}}'")
        parsed = _INNER.match(inner.strip())
        if parsed is None:
            raise PlaceholderError(
                f"malformed placeholder '${{{inner}}}': write ${{vars.NAME}}, ${{env.NAME}}, "
                "${env.NAME:-fallback}, ${ports.NAME}, ${run.id} or ${run.dir} "
                "(and $${ for a literal ${)"
            )
        ns, name, default = parsed.group("ns"), parsed.group("name"), parsed.group("default")
        if ns not in LOAD_TIME | RUN_TIME:
            raise PlaceholderError(
                f"unknown placeholder namespace '{ns}' in '${{{inner}}}': expected one of "
                "vars, env, ports, run"
            )
        if default is not None and ns != "env":
            raise PlaceholderError(
                f"'${{{inner}}}': a ':-fallback' is only allowed for env placeholders"
            )
        if ns == "run" and name not in RUN_KEYS:
            raise PlaceholderError(
                f"unknown run value '${{{inner}}}': expected ${{run.id}} or ${{run.dir}}"
            )
        yield Placeholder(ns, name, default, match.group(0))


def resolve_variables(
    declared: Mapping[str, Variable],
    overrides: Mapping[str, str],
    environ: Mapping[str, str],
    errors: list[PlaceholderError] | None = None,
) -> dict[str, Scalar]:
    """Give every declared variable its value: ``--var`` beats ``env:`` beats ``default``.

    With ``errors``, a variable without a valid value is added there and left out, and the
    others are still resolved.
    """
    values: dict[str, Scalar] = {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none are declared"
        exc = PlaceholderError(
            f"--var {unknown[0]}=... names no declared variable (declared: {known}); "
            "declare it under 'variables:'",
            ("variables",),
        )
        if errors is None:
            raise exc
        errors.append(exc)
    for name, var in declared.items():
        try:
            values[name] = _value(name, var, overrides, environ)
        except PlaceholderError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return values


def _value(
    name: str, var: Variable, overrides: Mapping[str, str], environ: Mapping[str, str]
) -> Scalar:
    value: Scalar | None
    if name in overrides:
        value = overrides[name]
    elif var.env and var.env in environ:
        value = environ[var.env]
    else:
        value = var.default
    if value is None:
        how = f"set ${var.env}, " if var.env else ""
        raise PlaceholderError(
            f"variable '{name}' has no value: {how}pass --var {name}=VALUE or give it a default",
            ("variables", name),
        )
    if var.choices is not None and not any(str(value) == str(c) for c in var.choices):
        allowed = ", ".join(str(c) for c in var.choices)
        raise PlaceholderError(
            f"variable '{name}' is '{value}', expected one of: {allowed}", ("variables", name)
        )
    return value


@dataclass(frozen=True, slots=True)
class Substitution:
    """The load-time context: variable values and the environment."""

    variables: Mapping[str, Scalar]
    environ: Mapping[str, str]
    unresolved: frozenset[str] = frozenset()
    """Declared variables that got no valid value (already reported)."""

    def value_of(self, ph: Placeholder, path: tuple[str | int, ...]) -> Scalar:
        """The value of a load-time placeholder."""
        if ph.namespace == "vars":
            if ph.name in self.unresolved:
                raise PlaceholderError(f"'{ph.text}' has no value: see variables.{ph.name}", path)
            if ph.name not in self.variables:
                known = ", ".join(sorted(self.variables)) or "none are declared"
                raise PlaceholderError(
                    f"'{ph.text}' names no declared variable (declared: {known}); "
                    "declare it under 'variables:'",
                    path,
                )
            return self.variables[ph.name]
        if ph.name in self.environ:
            return self.environ[ph.name]
        if ph.default is not None:
            return ph.default
        raise PlaceholderError(
            f"environment variable '{ph.name}' is not set: set it, or write "
            f"${{env.{ph.name}:-fallback}}",
            path,
        )


def is_placeholder(value: object) -> bool:
    """True if ``value`` is text that is exactly one load-time placeholder (``${vars.n}``)."""
    if not isinstance(value, str) or "${" not in value:
        return False
    try:
        found = list(find_placeholders(value))
    except PlaceholderError:
        return False
    return len(found) == 1 and not found[0].is_run_time and value.strip() == found[0].text


def substitute(
    document: Any,
    context: Substitution,
    path: tuple[str | int, ...] = (),
    errors: list[PlaceholderError] | None = None,
) -> Any:
    """Replace load-time placeholders in every string of ``document``; keys are left alone.

    Run-time placeholders are checked for syntax and kept. Errors carry the document path;
    with ``errors``, each is added there and its text left as written, so that every problem
    of a file can be found in one pass.
    """
    if isinstance(document, dict):
        return {k: substitute(v, context, (*path, str(k)), errors) for k, v in document.items()}
    if isinstance(document, list):
        return [substitute(v, context, (*path, i), errors) for i, v in enumerate(document)]
    if not isinstance(document, str) or "$" not in document:
        return document
    try:
        return _substituted(document, context, path)
    except PlaceholderError as exc:
        if errors is None:
            raise
        errors.append(exc)
        return document


def _substituted(document: str, context: Substitution, path: tuple[str | int, ...]) -> Any:
    try:
        found = list(find_placeholders(document))
    except PlaceholderError as exc:
        raise PlaceholderError(str(exc), path) from None
    load_time = [ph for ph in found if not ph.is_run_time]
    if len(found) == 1 and load_time and document.strip() == found[0].text:
        return context.value_of(found[0], path)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return token  # kept escaped: render() turns it into a literal "${"
        ph = next(p for p in found if p.text == token)
        return token if ph.is_run_time else str(context.value_of(ph, path))

    return _TOKEN.sub(replace, document)


def render(text: str, ports: Mapping[str, int], run: Mapping[str, str]) -> str:
    """Fill run-time placeholders; raises :class:`PlaceholderError` for an unknown name."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        ph = next(find_placeholders(token))
        table: Mapping[str, object] = ports if ph.namespace == "ports" else run
        if ph.name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise PlaceholderError(f"'{token}' is not known at run time (known: {known})")
        return str(table[ph.name])

    return _TOKEN.sub(replace, text)
