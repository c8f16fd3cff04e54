"""JSON Schema for editors, from the models, aware of ``${vars...}`` and ``${env...}``.

Load-time placeholders are replaced before validation, so a value such as
``skew: "${vars.skew}"`` is valid wherever any value is: the schema says so.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of files that load into ``model``."""
    schema = _allow_placeholders(model.model_json_schema(mode="validation"))
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
