"""Every fenced code block of the documentation, read and sorted by what it is.

``blocks()`` reads README.md, docs/**/*.md and experiments/**/*.md and returns one
:class:`Block` per fenced block (```` ``` ```` or ``~~~``, indented ones inside list items too),
with its file, the line of its opening fence, its info string and a kind:

- ``experiment``: YAML, JSON or TOML with ``faults`` at the top: a whole experiment file;
- ``plan``: ``experiments`` at the top and no ``faults``: a game-day plan (model/gameday.py);
- ``policy``: only site-policy keys (safety/policy.py), with ``version``: a whole policy file;
- ``fragment``: only sections of an experiment (``blast_radius: {...}``, ``phases:``), or
  only policy keys without ``version``: :meth:`Block.document` merges it into a small valid
  base experiment (or into safety/default.yaml), so it is checked as part of a whole file;
- ``commands``: sh/bash/shell/console blocks, and a GitHub Actions workflow (its ``run:``
  steps); :meth:`Block.commands` gives the command lines;
- ``other``: Python, program output, diagrams, API bodies.

A block is left unchecked only when the Markdown says so on the line above its fence (blank
lines between are allowed): ``<!-- docs-check: skip, why -->``; ``Block.skip`` holds the why.
Other tests reuse this (e.g. to run every experiment, policy and plan through the JSON Schema:
``[b.document() for b in blocks() if b.kind in ("experiment", "policy", "plan", "fragment")]``).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("README.md", "docs/**/*.md", "experiments/**/*.md")
POLICY = ROOT / "safety" / "default.yaml"

Kind = Literal["experiment", "policy", "plan", "fragment", "commands", "other"]
DATA = {"yaml": ".yaml", "yml": ".yaml", "json": ".json", "toml": ".toml"}
"""Info strings of data blocks, and the suffix a file of that format takes."""
SHELLS = {"sh", "bash", "shell", "console", "shell-session"}
"""Info strings of command blocks; in ``console`` blocks only ``$ `` lines are commands."""

BASE_EXPERIMENT: dict[str, Any] = {
    "version": 1,
    "name": "docs-fragment",
    "system": {"stack": "demo"},
    "targets": {"backends": {"kind": "proxy", "select": "backend-*"}},
    "load": {
        "url": "http://127.0.0.1:${ports.frontend}/items",
        "rate": "100/s",
        "timeout": "2s",
        "group_header": "X-Backend",
    },
    "steady_state": [
        {"name": "p95_latency", "of": "latency", "quantile": 0.95, "margin": "25%"},
        {"name": "errors", "of": "error_rate", "max": "1%"},
    ],
    "faults": [{"type": "latency", "target": "backends", "latency": "300ms"}],
    "blast_radius": {"count": 1},
    "safety": {"abort_when": [{"metric": "errors", "above": "20%", "for": "2s"}]},
}
"""What an experiment fragment is merged into: valid under safety/default.yaml on its own,
with the metric names (``errors``, ``p95_latency``), target (``backends``) and group header
(for ``control: concurrent``) the documents' fragments rely on."""

_SKIP = re.compile(r"<!--\s*docs-check:\s*skip\b[,:]?\s*(.*?)\s*-->")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    file: str
    """Path relative to the repository root, with ``/``: ``docs/policy.md``."""
    line: int
    """Line of the opening fence (1-based); the text starts on the next one."""
    info: str
    """The fence's info string as written: ``yaml``, ``sh``, ``""``."""
    text: str
    """The block's text, its fence's indentation removed."""
    kind: Kind
    base: Literal["experiment", "policy"] | None = None
    """For a fragment: what it is a part of."""
    skip: str | None = None
    """Why the block is not checked (a ``docs-check: skip`` comment above it), else None."""

    @property
    def id(self) -> str:
        """``README.md:53``: where to look."""
        return f"{self.file}:{self.line}"

    @property
    def lang(self) -> str:
        """The info string's first word, lower case."""
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def suffix(self) -> str:
        """The suffix of a file holding :meth:`render` (``.json`` for a merged fragment)."""
        return ".json" if self.kind == "fragment" else DATA.get(self.lang, ".yaml")

    def data(self) -> Any:
        """The block parsed as its format says (YAML for a block without an info string)."""
        return parse(self.lang, self.text)

    def document(self) -> dict[str, Any]:
        """The whole file this block stands for: itself, or a fragment merged into its base
        (see :func:`merge`)."""
        data = self.data()
        assert isinstance(data, dict), f"{self.id} is not a mapping"
        if self.kind != "fragment":
            return data
        base = BASE_EXPERIMENT if self.base == "experiment" else yaml.safe_load(POLICY.read_text())
        return merge(base, data)

    def render(self) -> str:
        """:meth:`document` written in the block's own format, as a user would save it: the
        block's text itself unless it is a fragment (a merged fragment is written as JSON, which
        YAML reads too)."""
        if self.kind != "fragment":
            return self.text
        return json.dumps(self.document(), indent=2)

    def commands(self) -> list[str]:
        """The command lines of a ``commands`` block (continuations joined, prompts and blank
        lines dropped; comments kept, since they may say the exit code)."""
        if self.lang in DATA:  # a CI workflow: its steps' `run:` scripts
            data = self.data()
            scripts = [
                step["run"]
                for job in (data.get("jobs") or {}).values()
                for step in job.get("steps") or []
                if isinstance(step, dict) and "run" in step
            ]
            return [line for s in scripts for line in _lines(s, console=False)]
        return _lines(self.text, console=self.lang in {"console", "shell-session"})


def merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """A fragment laid over its base: each top-level section of ``part`` replaces the base's,
    except that named things are added, so that what the base's other sections rely on stays:
    the entries of ``system``, ``targets`` and ``variables`` (the part's win), and the items
    of a list (``steady_state``, ``faults``, ``protected``...), a part's item replacing the
    base's item of the same ``name``."""
    merged = copy.deepcopy(base)
    for key, value in part.items():
        old = base.get(key)
        if key in {"system", "targets", "variables"} and isinstance(old, dict):
            merged[key] = {**old, **value} if isinstance(value, dict) else value
        elif isinstance(old, list) and isinstance(value, list):
            names = {i.get("name") for i in value if isinstance(i, dict)} - {None}
            kept = [i for i in old if not (isinstance(i, dict) and i.get("name") in names)]
            merged[key] = [*copy.deepcopy(kept), *value]
        else:
            merged[key] = value
    return merged


def parse(lang: str, text: str) -> Any:
    """Parse a block's text; ValueError if it does not parse as its info string says."""
    try:
        if lang == "json":
            return json.loads(text)
        if lang == "toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"does not parse as {lang or 'YAML'}: {exc}") from None


def _lines(text: str, *, console: bool) -> list[str]:
    found: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if console and not pending:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line and not line.startswith("#"):
            found.append(line)
    return found


@cache
def _sections() -> tuple[frozenset[str], frozenset[str]]:
    """Top-level keys of an experiment and of a policy, from the models themselves."""
    from chaoskit.model import Experiment
    from chaoskit.safety.policy import Policy

    return frozenset(Experiment.model_fields), frozenset(Policy.model_fields)


def classify(lang: str, text: str) -> tuple[Kind, Literal["experiment", "policy"] | None]:
    """What a block is, and for a fragment what it belongs to."""
    if lang in SHELLS:
        return "commands", None
    if lang not in DATA and lang:
        return "other", None
    try:
        data = parse(lang, text)
    except ValueError:
        # A data block that does not parse is checked as what it was meant to be, and fails;
        # a block without an info string is just text.
        return ("other", None) if not lang else ("experiment", None)
    if not isinstance(data, dict) or not data:
        return "other", None
    keys = set(data)
    experiment, policy = _sections()
    if "faults" in keys:
        return "experiment", None
    if "experiments" in keys:
        return "plan", None
    if "jobs" in keys and lang:  # a CI workflow
        return "commands", None
    if keys <= experiment:
        return "fragment", "experiment"
    if keys <= policy:
        return ("policy", None) if "version" in keys else ("fragment", "policy")
    return "other", None


def read(path: Path, root: Path = ROOT) -> list[Block]:
    """The fenced blocks of one Markdown file (named relative to ``root``)."""
    file = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip()
        start, body = i, []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            i += 1
        i += 1
        text = "\n".join(body) + "\n"
        kind, base = classify(info.split()[0].lower() if info else "", text)
        found.append(Block(file, start + 1, info, text, kind, base, _skip_reason(lines, start)))
    return found


def _skip_reason(lines: list[str], fence: int) -> str | None:
    """The reason of a ``docs-check: skip`` comment on the nearest non-blank line above."""
    above = fence - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    marker = _SKIP.search(lines[above]) if above >= 0 else None
    if marker is None:
        return None
    return marker[1] or "no reason given"


def markdown_files() -> list[Path]:
    """README.md, docs/**/*.md and experiments/**/*.md, sorted."""
    return sorted({p for pattern in SOURCES for p in ROOT.glob(pattern)})


def blocks() -> list[Block]:
    """Every fenced code block of the documentation, in file and line order."""
    return [block for path in markdown_files() for block in read(path)]


def split_commands(line: str) -> list[list[str]]:
    """A command line as simple commands (split at ``&&``, ``||``, ``;`` and ``|``), each as
    its words, with redirections (``> FILE``) and a trailing comment dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[list[str]] = [[]]
    tokens = list(lexer)
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in {"&&", "||", ";", "|", "&"}:
            parts.append([])
        elif token in {">", ">>", "<", "&>"}:
            skip_next = True
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def comment(line: str) -> str:
    """The trailing ``# comment`` of a command line ('' if none), quotes respected."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1 :].strip()
    return ""
