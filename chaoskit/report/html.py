"""``report.html``: one self-contained file (inline CSS and SVG, no script, nothing fetched) a
team reads after a game day — the verdict in plain words first, then the evidence."""

from __future__ import annotations

import math
import platform
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from ..load import ProbeSeries, RequestSamples
from ..model import Experiment, Metric
from ..model.metrics import LatencyMetric, ProbeMetric
from ..model.result import MetricRecovery, Phase, RunResult
from ..runner.measure import per_second, request_kind
from ..safety.valve import threshold_value
from .plots import Timeline, svg_timeline
from .words import cautions, headline, recovery_trials, seconds, valve_state

__all__ = ["render_html"]


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("chaoskit.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _unit(metric: Metric) -> tuple[str, float]:
    """The axis label and the factor from stored values (seconds, shares) to shown ones."""
    kind = request_kind(metric)
    return ("reading", 1.0) if kind is None else kind.unit


def _timelines(result: RunResult, experiment: Experiment) -> list[Timeline]:
    phases = result.phases
    if not phases:
        return []
    t0 = phases[0].start
    spans = [(p.phase, p.start - t0, p.end - t0) for p in phases]
    injects = [e.at - t0 for e in result.faults if e.event == "inject" and e.at is not None]
    reverts = [e.at - t0 for e in result.faults if e.event == "revert" and e.at is not None]
    verdict = result.verdict
    concurrent = verdict is not None and verdict.comparison == "concurrent"
    samples = _requests(result)
    recoveries = [(p.start - t0, p.end - t0) for p in phases if p.phase == "recovery"]
    timeout = experiment.load.timeout.seconds if experiment.load is not None else 2.0
    found = []
    for metric in experiment.steady_state:
        unit, factor = _unit(metric)
        series: dict[str, tuple[list[float], list[float]]] = {}
        if isinstance(metric, ProbeMetric):
            readings = _readings(result, metric.name)
            if readings is not None and len(readings):
                series["reading"] = ((readings.time - t0).tolist(), readings.value.tolist())
        elif samples is not None:
            for group in ("experiment", "control") if concurrent else ("all",):
                groups = None if group == "all" else [group]
                times, values = _phase_seconds(metric, samples, phases, groups, timeout)
                series[group] = ([t - t0 for t in times], [v * factor for v in values])
        ttr = verdict.recovery.get(metric.name) if verdict is not None else None
        trials = recovery_trials(ttr) if ttr is not None and not ttr.reason else []
        recovered = [  # from each trial's last revert (older files: its recovery phase)
            (t["from"] - t0 if t.get("from") else start) + t["seconds"]
            for (start, _), t in zip(recoveries, trials, strict=False)
            if t["seconds"] is not None
        ]
        not_back = [
            end for (_, end), t in zip(recoveries, trials, strict=False) if not t["recovered"]
        ]
        limits = [
            (f"SLO {side}", threshold_value(value) * factor)
            for side in ("max", "min")
            if (value := getattr(metric, side, None)) is not None
        ]
        for threshold in experiment.safety.abort_when:
            if threshold.metric == metric.name:
                for side in ("above", "below"):
                    value = getattr(threshold, side)
                    if value is not None:
                        limits.append((f"abort {side}", threshold_value(value) * factor))
        title = f"{metric.name} ({metric.of}"
        title += f", p{round(metric.quantile * 100)})" if isinstance(metric, LatencyMetric) else ")"
        found.append(
            Timeline(
                title, unit, series, spans, injects, reverts, recovered, limits,
                not_recovered=not_back, steps=not isinstance(metric, ProbeMetric),
            )
        )  # fmt: skip
    return found


_POINTS = 1500
"""Points per timeline at most, about (a day-long run is drawn on one-minute windows)."""


def _requests(result: RunResult) -> RequestSamples | None:
    """Every request of the run (from the file beside result.json, or inline in an older
    result); None if there are none or they cannot be read (the cautions say so)."""
    if not result.samples:
        return None
    try:
        return RequestSamples.load(result.samples, result.folder)
    except (OSError, ValueError):
        return None


def _readings(result: RunResult, name: str) -> ProbeSeries | None:
    """One probe's readings, as :func:`_requests` finds the requests."""
    record = result.probes.get(name)
    if not record:
        return None
    try:
        return ProbeSeries.load(record, result.folder)
    except (OSError, ValueError):
        return None


def _phase_seconds(
    metric: Metric,
    samples: RequestSamples,
    phases: list[Phase],
    groups: list[str] | None,
    timeout: float,
) -> tuple[list[float], list[float]]:
    """The metric per second, each phase cut from its own start — the windows recovery is
    judged on — as (window starts, values). A run too long to draw second by second is drawn
    on wider windows (at most about ``_POINTS`` in all); the verdicts never are."""
    length = sum(phase.end - phase.start for phase in phases)
    width = max(1.0, math.ceil(length / _POINTS))
    times: list[float] = []
    values: list[float] = []
    for phase in phases:
        wide = min(width, max(1.0, math.floor(phase.end - phase.start)))  # a short phase shows
        ends, part = per_second(
            metric, samples, phase.start, phase.end, groups, timeout=timeout, width=wide
        )
        times += [phase.start + end - wide for end in ends]
        values += part
    return times, values


def render_html(result: RunResult) -> str:
    """The report for one run."""
    experiment = Experiment.model_validate(result.experiment)
    timelines = _timelines(result, experiment)
    verdict = result.verdict
    written = [e.model_dump() for e in result.faults]
    injected = {e["id"]: e for e in written if e["event"] == "inject"}
    events = [  # a revert names its fault and target as the injection did
        {**injected.get(e["id"], {}), **{k: v for k, v in e.items() if v is not None}}
        if e["event"] == "revert"
        else e
        for e in written
    ]
    recovery: dict[str, MetricRecovery] = verdict.recovery if verdict is not None else {}
    context = {
        "events": events,
        "result": result,
        "experiment": experiment,
        "headline": headline(result),
        "cautions": cautions(result),
        "plots": [(t.title, svg_timeline(t)) for t in timelines],
        "metrics": verdict.metrics if verdict is not None else [],
        "not_judged": verdict.not_judged if verdict is not None else {},
        "recovery": recovery,
        "late": verdict.recovery_failures if verdict is not None else [],
        "conditions": result.valve.get("conditions", []),
        "steady": result.steady_state,
        "trials_of": recovery_trials,
        "seconds": seconds,
        "valve_state": valve_state,
        "written": (result.source or {}).get("text")
        or yaml.safe_dump(result.experiment, sort_keys=False, allow_unicode=True),
        "source": (result.source or {}).get("path"),
        "environment": {
            "host": result.host,
            "chaoskit": result.chaoskit,
            "python": result.python or platform.python_version(),
        },
        "fmt": _fmt,
    }
    return _environment().get_template("report.html.j2").render(**context)


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for people: significant digits, '—' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
