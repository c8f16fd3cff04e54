"""What other packages add to chaoskit through entry points (see docs/plugins.md).

Each group is read once, when first needed: ``chaoskit --help`` reads none. A plugin that
cannot be loaded, or is not what its group asks for, is set aside with the reason, shown by
``chaoskit plugins``; it never stops chaoskit from starting.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from importlib import metadata

__all__ = ["GROUPS", "Loaded", "Plugin", "installed", "load_group"]

GROUPS: dict[str, str] = {
    "chaoskit.faults": "a fault type: a model subclassing chaoskit.model.FaultBase",
    "chaoskit.drivers": "a fault driver, by the name faults give it: a factory taking a "
    "chaoskit.drivers.base.DriverConfig",
    "chaoskit.probes": "a probe type: a model with a 'type' and a reader() method",
    "chaoskit.reporters": "a report written beside result.json, named by the entry point: "
    "a function of the result document returning the file's text",
}
"""Every entry point group chaoskit reads, and what its entries must name."""


class Plugin(NamedTuple):
    """One entry point in one of chaoskit's groups."""

    group: str
    name: str
    value: str
    """What it names, as ``module:attribute``."""
    package: str
    """The distribution that declares it, with its version."""


class Loaded(NamedTuple):  # NamedTuples, not dataclasses: this module loads with chaoskit.model
    """A group's plugins: those loaded, and those set aside with the reason."""

    good: list[tuple[Plugin, object]]
    broken: list[tuple[Plugin, str]]


def _declaring() -> Iterator[Path]:
    """The installed distributions (``*.dist-info`` folders on ``sys.path``) whose entry points
    name a chaoskit group. By hand, as a text search: ``importlib.metadata`` would parse every
    distribution's metadata, which costs each ``chaoskit validate`` some 15 ms."""
    seen = set()
    for entry in sys.path:
        try:
            listing = os.scandir(entry or ".")
        except OSError:  # a zip file, or a folder that is not there
            continue
        with listing:
            for found in listing:
                if not found.name.endswith(".dist-info") or found.name in seen:
                    continue
                try:
                    text = Path(found.path, "entry_points.txt").read_bytes()
                except OSError:
                    continue
                if b"[chaoskit." in text:
                    seen.add(found.name)  # the first on sys.path wins, as imports do
                    yield Path(found.path)


@functools.cache
def _entry_points() -> tuple[tuple[metadata.EntryPoint, str], ...]:
    found: list[tuple[metadata.EntryPoint, str]] = []
    for path in _declaring():
        from importlib.metadata import PathDistribution  # noqa: PLC0415 - 10 ms, for plugins only

        dist = PathDistribution(path)
        eps = [ep for ep in dist.entry_points if ep.group in GROUPS]
        package = f"{dist.metadata['Name']} {dist.version}"
        found.extend((ep, package) for ep in eps)
    return tuple(found)


def installed(group: str | None = None) -> list[Plugin]:
    """The plugins installed in this environment (in ``group``, or in every group)."""
    return sorted(
        (Plugin(ep.group, ep.name, ep.value, package) for ep, package in _entry_points()
         if group is None or ep.group == group),
        key=lambda p: (p.group, p.name),
    )  # fmt: skip


@functools.cache
def _load(group: str) -> tuple[tuple[Plugin, object | None, str | None], ...]:
    loaded: list[tuple[Plugin, object | None, str | None]] = []
    for ep, package in _entry_points():
        if ep.group != group:
            continue
        plugin = Plugin(ep.group, ep.name, ep.value, package)
        try:
            loaded.append((plugin, ep.load(), None))
        except Exception as error:  # whatever a third party's import raises
            loaded.append((plugin, None, f"cannot be loaded: {type(error).__name__}: {error}"))
    return tuple(loaded)


def load_group(group: str, check: Callable[[Plugin, object], str | None]) -> Loaded:
    """Load every plugin of ``group``; ``check`` says what is wrong with a loaded object
    (None when it is fit). Loading happens once per process; checks run on every call."""
    good: list[tuple[Plugin, object]] = []
    broken: list[tuple[Plugin, str]] = []
    for plugin, obj, error in _load(group):
        problem = error if error is not None else check(plugin, obj)
        if problem is None:
            good.append((plugin, obj))
        else:
            broken.append((plugin, problem))
    return Loaded(good, broken)
