"""The live view of a run: what is happening now, for the console ``chaoskit run`` shows."""

from __future__ import annotations

import time
from typing import Any

from .running import Run

__all__ = ["snapshot"]


def snapshot(run: Run) -> dict[str, Any]:
    """What is happening now, for a live view: phase, time left, metrics, faults, valve."""
    now = time.monotonic()
    current = run.phases[-1] if run.phases else None
    metrics = {}
    for metric in run.exp.steady_state:
        groups = ("experiment", "control") if run.concurrent else ("all",)
        metrics[metric.name] = {g: run.watch.value(metric, g, now) for g in groups}
    trip = run.valve.tripped if run.valve else None
    return {
        "run": run.run_id,
        "phase": current["phase"] if current else "starting",
        "trial": current.get("trial") if current else None,
        "left": max(0.0, current["end"] - now) if current else None,
        "metrics": metrics,
        "faults": [
            f"{r.fault} on {r.target.kind} {r.target.name}" for r in run.faults.applied.values()
        ],
        "valve": f"tripped: {trip.detail}" if trip is not None else _valve_state(run, now),
        "probe_errors": {
            name: series.errors[len(series) - 1]
            for name, series in run.probes.items()
            if len(series) and len(series) - 1 in series.errors
        },
    }


def _valve_state(run: Run, now: float) -> str:
    """'armed', or the breaches under way and how long each must still last."""
    records = run.valve.records if run.valve is not None else []
    breaching = [
        f"{r.condition.metric} beyond {r.condition.limit} for {now - r.since:.1f}s of "
        f"{r.condition.for_}"
        for r in records
        if r.since is not None
    ]
    return "armed" if not breaching else "armed; breached: " + "; ".join(breaching)
