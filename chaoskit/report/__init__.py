"""What a run leaves for people and pipelines: ``report.html``, ``junit.xml`` and
``summary.md`` beside its ``result.json``, and the live console while it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..model.result import ResultError, RunResult

if TYPE_CHECKING:
    from ..plugins import Loaded, Plugin

__all__ = ["ReportError", "Reports", "load_result", "reporter_plugins", "write_reports"]


class ReportError(Exception):
    """A result file that cannot be reported on; the message says why."""


def load_result(path: Path) -> RunResult:
    """A run's ``result.json`` (``path`` may be the run's folder); ReportError if it is not one."""
    try:
        return RunResult.read(path)
    except ResultError as error:
        raise ReportError(str(error)) from None


def _check_experiment(result: RunResult, path: Path) -> None:
    """The reports draw the experiment as run: it must be one (``gate`` and ``history`` need
    only the record, so :func:`load_result` does not ask this)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from ..model import Experiment  # noqa: PLC0415

    try:
        Experiment.model_validate(result.experiment)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "experiment"
        raise ReportError(
            f"{path}: its 'experiment' is not an experiment chaoskit can read ({where}: "
            f"{first['msg']}): give a result.json that chaoskit run wrote, unedited"
        ) from None


@dataclass(frozen=True)
class Reports:
    """The reports written beside a result.json, and those that could not be."""

    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Each plugin report that failed, in words (the built-in ones raise instead)."""


Renderer = Callable[[RunResult], str]
PluginRenderer = Callable[[dict[str, Any]], str]
"""A plugin's report: a function of the result document as plain JSON (its own copy)."""


def reporter_plugins() -> Loaded:
    """The reports other packages add (entry point group ``chaoskit.reporters``): the entry
    point's name is the file name, its value a function of the result document returning
    the file's text."""
    from ..plugins import load_group  # noqa: PLC0415

    def fit(plugin: Plugin, found: object) -> str | None:
        if not callable(found):
            return "is not a function of the result document"
        if plugin.name in _BUILTIN_FILES or "/" in plugin.name or plugin.name.startswith("."):
            return f"'{plugin.name}' cannot be a report's file name"
        return None

    return load_group("chaoskit.reporters", fit)


_BUILTIN_FILES = frozenset({"report.html", "junit.xml", "summary.md", "result.json"})


def write_reports(result_path: Path) -> Reports:
    """Render the reports of the run whose ``result.json`` is at ``result_path``, beside it:
    the built-in ones (:class:`ReportError` if one cannot be written), then each plugin's (a
    plugin that fails is said in ``problems``, and the rest are still written)."""
    from .html import render_html  # noqa: PLC0415 - matplotlib and jinja2 load only here
    from .junit import render_junit  # noqa: PLC0415
    from .markdown import render_markdown  # noqa: PLC0415

    result = load_result(result_path)
    _check_experiment(result, result_path)
    folder = result_path.parent if result_path.is_file() else result_path
    written = []
    renderers: tuple[tuple[str, Renderer], ...] = (
        ("report.html", render_html),
        ("junit.xml", render_junit),
        ("summary.md", render_markdown),
    )
    for name, render in renderers:
        written.append(_write(folder / name, render(result)))
    problems = []
    plugins = reporter_plugins()
    for plugin, problem in plugins.broken:
        problems.append(f"{plugin.name} (from {plugin.package}) {problem}")
    for plugin, found in plugins.good:
        try:
            text = cast(PluginRenderer, found)(result.to_json())  # a copy of its own
            if not isinstance(text, str):
                raise TypeError(f"returned {type(text).__name__}, not text")
        except Exception as error:  # a third party's code: said, and the others still written
            problems.append(f"{plugin.name} (from {plugin.package}) failed: {error}")
            continue
        written.append(_write(folder / plugin.name, text))
    return Reports(written, problems)


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:  # a full or read-only disk: the run's verdict still stands
        raise ReportError(f"cannot write {path}: {error.strerror}") from None
    return path
