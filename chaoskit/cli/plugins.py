"""``chaoskit plugins``: what other packages add to chaoskit here, and whether each works."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ..exitcodes import ExitCode

_WHAT = {
    "chaoskit.faults": "fault type",
    "chaoskit.drivers": "driver",
    "chaoskit.probes": "probe type",
    "chaoskit.reporters": "report",
}


def _statuses() -> list[dict[str, str]]:
    """Every installed plugin with ``ok``, or why it is set aside."""
    from ..drivers.registry import driver_plugins
    from ..model.faults import fault_plugins
    from ..model.metrics import probe_plugins
    from ..plugins import installed
    from ..report import reporter_plugins

    said: dict[tuple[str, str], str] = {}
    for loaded in (fault_plugins(), driver_plugins(), probe_plugins(), reporter_plugins()):
        for plugin, _ in loaded.good:
            said[plugin.group, plugin.name] = "ok"
        for plugin, problem in loaded.broken:
            said[plugin.group, plugin.name] = problem
    return [
        {"kind": _WHAT[plugin.group], "name": plugin.name, "package": plugin.package,
         "value": plugin.value, "status": said.get((plugin.group, plugin.name), "ok")}
        for plugin in installed()
    ]  # fmt: skip


def plugins(
    format: Annotated[
        str, typer.Option("--format", help="text (for people) or json (for tools).")
    ] = "text",
) -> None:
    """List the fault types, drivers, probe types and reports that installed packages add
    (entry points; see docs/plugins.md). Exit 2 if any of them cannot be used."""
    if format not in ("text", "json"):
        raise typer.BadParameter("use 'text' or 'json'", param_hint="--format")
    rows = _statuses()
    broken = [row for row in rows if row["status"] != "ok"]
    if format == "json":
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        groups = ", ".join(_WHAT)
        typer.echo(f"no plugins installed (chaoskit reads the entry point groups {groups})")
    else:
        for row in rows:
            typer.echo(
                f"{row['kind']:<11} {row['name']:<16} {row['package']:<28} {row['value']}"
                + ("" if row["status"] == "ok" else f"\n{'':<12}NOT USED: {row['status']}")
            )
    if broken:
        raise typer.Exit(ExitCode.INVALID)
