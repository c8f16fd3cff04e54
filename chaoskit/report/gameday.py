"""The report of a game day: every experiment of the plan in order, how it ended, and a link
to its own report (``gameday.html``, and ``summary.md`` for a chat message)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["write_day_reports"]


def write_day_reports(day: dict[str, Any], description: str | None = None) -> list[Path]:
    """Write gameday.html and summary.md into the day's folder; their paths."""
    folder = Path(day["folder"])
    environment = Environment(
        loader=PackageLoader("chaoskit.report", "templates"), autoescape=select_autoescape(["j2"])
    )
    held = sum(1 for e in day["experiments"] if e["outcome"] == "held")
    html = environment.get_template("gameday.html.j2").render(
        day=day,
        description=description,
        held=held,
        link=lambda target: os.path.relpath(target, folder),
    )
    lines = [
        f"### chaoskit game day: {day['plan']} — **{day['outcome'].upper()}**",
        "",
        f"{held} of {len(day['experiments'])} experiment(s) held."
        + (f" Stopped early: {day['stopped_early']}." if day.get("stopped_early") else ""),
        "",
        "| file | experiment | outcome |",
        "|---|---|---|",
        *(f"| {e['file']} | {e['name']} | {e['outcome'].upper()} |" for e in day["experiments"]),
    ]
    written = [folder / "gameday.html", folder / "summary.md"]
    written[0].write_text(html, encoding="utf-8")
    written[1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written
