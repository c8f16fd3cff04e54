"""What the loader reports: each problem with its file, line, column and field path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadError", "Path_", "Problem"]

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, where it is, and what to do."""

    file: str
    line: int
    column: int
    path: Path_
    message: str
    beyond_schema: bool = False
    """A rule the JSON Schema cannot state (it joins two places of the file, or reads a
    value's magnitude): editors do not flag it, ``chaoskit validate`` does."""
    shape: bool = field(default=False, compare=False)
    """The value is of the wrong shape (a text where a list or mapping belongs)."""

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
    partial: Any = None
    """For an experiment file: its valid parts (a :class:`~chaoskit.loader.salvage.Salvage`)
    when they are enough to judge it against a site policy, so one pass says everything."""

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
