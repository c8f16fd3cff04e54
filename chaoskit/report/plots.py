"""Timelines of a run's metrics as inline SVG (matplotlib): phases shaded, faults marked, the
recovery point of each trial, control and experiment groups as separate lines."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Timeline", "svg_timeline"]

_SHADES = {"baseline": "#9aa5b1", "fault": "#e8505b", "recovery": "#3fb68b"}
_LINES = {"experiment": "#d1495b", "control": "#2e86ab", "all": "#2e86ab"}


@dataclass
class Timeline:
    """What one metric's plot shows; times are seconds since the run's first phase began."""

    title: str
    unit: str
    series: dict[str, tuple[list[float], list[float]]]
    """Per group: (times, values); NaN leaves a gap."""
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    injects: list[float] = field(default_factory=list)
    reverts: list[float] = field(default_factory=list)
    recovered: list[float] = field(default_factory=list)
    """When each trial's metric came back to its baseline band."""
    limits: list[tuple[str, float]] = field(default_factory=list)
    """Horizontal lines (label, value), e.g. an SLO or an abort threshold."""
    not_recovered: list[float] = field(default_factory=list)
    """The end of each recovery phase in which the metric was not back in time."""
    steps: bool = False
    """Series are per-window values at window starts, drawn as steps (a value holds for its
    whole window, so a recovery marker at a window's start sits on the window back in band)."""


def svg_timeline(timeline: Timeline) -> str:
    """The plot as an SVG document (no XML header), sized by its viewBox."""
    import matplotlib  # noqa: PLC0415 - heavy: only when a report is drawn

    matplotlib.use("Agg", force=False)
    matplotlib.rcParams["svg.hashsalt"] = "chaoskit"  # the same run draws the same bytes
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=(9.0, 2.8), layout="constrained")
    axes: Any = figure.add_subplot()
    shaded: set[str] = set()
    for name, start, end in timeline.phases:
        if name in _SHADES:
            label = name if name not in shaded else None
            axes.axvspan(start, end, color=_SHADES[name], alpha=0.13, lw=0, label=label)
            shaded.add(name)
    for group, (times, values) in timeline.series.items():
        style = {"drawstyle": "steps-post"} if timeline.steps else {}
        axes.plot(times, values, color=_LINES.get(group, "#555"), lw=1.4, label=group, **style)
    for i, at in enumerate(timeline.injects):
        axes.axvline(at, color="#e8505b", lw=1.0, ls="--", label="inject" if i == 0 else None)
    for i, at in enumerate(timeline.reverts):
        axes.axvline(at, color="#3fb68b", lw=1.0, ls="--", label="revert" if i == 0 else None)
    for i, at in enumerate(timeline.recovered):
        axes.axvline(at, color="#1b7f5b", lw=1.6, label="recovered" if i == 0 else None)
    for i, at in enumerate(timeline.not_recovered):
        axes.axvline(
            at, color="#c0392b", lw=1.6, ls=":", label="not back in time" if i == 0 else None
        )
    for label, value in timeline.limits:
        if math.isfinite(value):
            axes.axhline(value, color="#7a5195", lw=1.0, ls=":", label=label)
    axes.set_title(timeline.title, loc="left", fontsize=10)
    axes.set_xlabel("seconds since the run began")
    axes.set_ylabel(timeline.unit)
    axes.grid(alpha=0.25)
    axes.legend(loc="upper left", fontsize=7, ncols=4, frameon=False)
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]
