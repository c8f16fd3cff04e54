"""JSON Schema for editors, from the models, aware of ``${vars...}`` and ``${env...}``.

Load-time placeholders are replaced before an experiment is validated, so a value such as
``skew: "${vars.skew}"`` is valid wherever any value is: the experiment's schema says so.
Policies and game-day plans have no placeholders. Rules the JSON Schema cannot state (two
fields compared, a size's magnitude once its unit is read) are raised as ``beyond_schema``
errors by the models and listed in the docs.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from itertools import pairwise
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from ..units import Bandwidth, Duration, Percent, Rate, Size

__all__ = ["PLACEHOLDER", "json_schema"]

PLACEHOLDER: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*\$\{(vars|env)\.[A-Za-z0-9_][A-Za-z0-9_.-]*(:-[^}]*)?\}\s*$",
    "description": "A load-time placeholder: ${vars.NAME} or ${env.NAME}.",
}
_ANNOTATIONS = ("title", "description", "default", "examples")


def _is_typed_leaf(node: dict[str, Any]) -> bool:
    if "const" in node or "$ref" in node:
        return False
    if "pattern" in node or "enum" in node:
        return True
    return node.get("type") in ("integer", "number", "boolean")


def _allow_placeholders(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_placeholders(item) for item in node]
    if not isinstance(node, dict):
        return node
    walked = {
        key: (value if key in ("properties", "$defs") else _allow_placeholders(value))
        for key, value in node.items()
    }
    for key in ("properties", "$defs"):
        if key in node:
            walked[key] = {name: _allow_placeholders(sub) for name, sub in node[key].items()}
    if _is_typed_leaf(walked):
        outer = {k: walked.pop(k) for k in _ANNOTATIONS if k in walked}
        return {**outer, "anyOf": [walked, PLACEHOLDER]}
    return walked


def _attribute_docs(cls: type) -> dict[str, str]:
    """Docstrings written under fields (``x: int`` then ``\"\"\"...\"\"\"``), bases first."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _models(annotation: Any, seen: dict[str, type[BaseModel]]) -> None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ in seen:
            return
        seen[annotation.__name__] = annotation
        for field in annotation.model_fields.values():
            _models(field.annotation, seen)
        return
    for arg in get_args(annotation):
        _models(arg, seen)


def _describe(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Put field docstrings into the schema as descriptions (for editors' hover text).

    Done here rather than with pydantic's ``use_attribute_docstrings``, which reads every
    model's source at import time and would slow every command down.
    """
    seen: dict[str, type[BaseModel]] = {}
    _models(model, seen)
    for name, cls in seen.items():
        node = schema if cls is model else schema.get("$defs", {}).get(name)
        if not node:
            continue
        if cls.__doc__ and "description" not in node:
            node["description"] = inspect.cleandoc(cls.__doc__)
        for field, doc in _attribute_docs(cls).items():
            key = cls.model_fields[field].alias or field if field in cls.model_fields else None
            prop = node.get("properties", {}).get(key) if key else None
            if prop is not None and "description" not in prop:
                prop["description"] = doc


def _allow_variable_shorthand(schema: dict[str, Any]) -> None:
    """``variables: {rate: 100/s}`` is short for ``{rate: {default: 100/s}}``: say so."""
    variables = schema.get("properties", {}).get("variables", {})
    for key in ("patternProperties", "additionalProperties"):
        entries = variables.get(key)
        if not isinstance(entries, dict):
            continue
        targets = entries if key == "patternProperties" else {None: entries}
        for pattern, entry in targets.items():
            shorthand = {"anyOf": [entry, {"type": ["string", "number", "boolean"]}]}
            if pattern is None:
                variables[key] = shorthand
            else:
                entries[pattern] = shorthand


class _Generator(GenerateJsonSchema):
    """Writes quantity defaults as people write them (``2s``), not as their fields."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, Duration | Size | Rate | Percent | Bandwidth):
            return str(dft)
        return super().encode_default(dft)


def json_schema(model: type[BaseModel], *, placeholders: bool = True) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of files that load into ``model``; with
    ``placeholders``, a load-time placeholder is accepted wherever a typed value is."""
    schema = model.model_json_schema(mode="validation", schema_generator=_Generator)
    _describe(schema, model)
    _allow_variable_shorthand(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **(_allow_placeholders(schema) if placeholders else schema),
    }
