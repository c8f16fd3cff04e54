"""What a run leaves for people and pipelines: ``report.html``, ``junit.xml`` and
``summary.md`` beside its ``result.json``, and the live console while it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["ReportError", "load_result", "write_reports"]


class ReportError(Exception):
    """A result file that cannot be reported on; the message says why."""


def load_result(path: Path) -> dict[str, Any]:
    """A run's ``result.json`` (``path`` may be the run's folder); ReportError if it is not one."""
    path = path / "result.json" if path.is_dir() else path
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        result = json.loads(text)
    except ValueError:
        raise ReportError(
            f"{path} is not JSON: give a run's result.json (under reports/<run id>/)"
        ) from None
    if not isinstance(result, dict) or not str(result.get("schema", "")).startswith(
        "chaoskit.result/"
    ):
        raise ReportError(f"{path} is not a chaoskit result (no 'schema' chaoskit.result/…)")
    return result


def _check_experiment(result: dict[str, Any], path: Path) -> None:
    """The reports draw the experiment as run: it must be one (``gate`` and ``history`` need
    only the record, so :func:`load_result` does not ask this)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from ..model import Experiment  # noqa: PLC0415

    try:
        Experiment.model_validate(result.get("experiment"))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "experiment"
        raise ReportError(
            f"{path}: its 'experiment' is not an experiment chaoskit can read ({where}: "
            f"{first['msg']}): give a result.json that chaoskit run wrote, unedited"
        ) from None


def write_reports(result_path: Path) -> list[Path]:
    """Render the reports of the run whose ``result.json`` is at ``result_path``, beside it."""
    from .html import render_html  # noqa: PLC0415 - matplotlib and jinja2 load only here
    from .junit import render_junit  # noqa: PLC0415
    from .markdown import render_markdown  # noqa: PLC0415

    result = load_result(result_path)
    _check_experiment(result, result_path)
    folder = result_path.parent if result_path.is_file() else result_path
    written = []
    renderers = (
        ("report.html", render_html),
        ("junit.xml", render_junit),
        ("summary.md", render_markdown),
    )
    for name, render in renderers:
        path = folder / name
        try:
            path.write_text(render(result), encoding="utf-8")
        except OSError as error:  # a full or read-only disk: the run's verdict still stands
            raise ReportError(f"cannot write {path}: {error.strerror}") from None
        written.append(path)
    return written
