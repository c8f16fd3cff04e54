"""Mutating a parsed document for fuzz tests: every path into it, and one change at a path."""

from __future__ import annotations

from typing import Any


def paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``data`` (keys and list indices), the document itself first."""
    found = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths(value, (*path, i))
    return found


def mutate(data: Any, path: tuple[Any, ...], action: str, value: Any, key: Any = None) -> Any:
    """``data`` with the node at ``path`` replaced by ``value``, deleted, renamed to ``key``, or
    with ``value`` added beside it (``replace``, ``delete``, ``rename``, ``add``)."""
    if not path:
        return value if action == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif action == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = value
    elif action == "add" and isinstance(parent, list):
        parent.append(value)
    return data
