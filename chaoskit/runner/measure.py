"""Steady-state metrics computed from the load's samples: the current value the safety valve
watches, the per-request data the statistics compare, and per-second series for recovery."""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
from numpy.typing import NDArray

from ..load import RequestSamples, Samples
from ..model import Metric
from ..model.experiment import Margins
from ..model.metrics import ErrorRateMetric, LatencyMetric, ThroughputMetric

__all__ = ["current_value", "judged_data", "margin_share", "per_second", "stats_kind"]

GROUPS = {"experiment": "experiment", "control": "control", "all": None}


def _groups(group: str) -> str | None:
    return GROUPS.get(group, group)


def stats_kind(metric: Metric) -> str | None:
    """The statistics' name for the metric's kind; None for metrics not judged from requests."""
    if isinstance(metric, LatencyMetric):
        return "latency"
    if isinstance(metric, ErrorRateMetric):
        return "error_rate"
    if isinstance(metric, ThroughputMetric):
        return "throughput"
    return None


def margin_share(metric: Metric, margins: Margins) -> float | None:
    """The metric's own margin, else the experiment's default for its kind, as a fraction
    (None: the statistics' own default)."""
    given = metric.margin
    if given is None:
        if isinstance(metric, LatencyMetric):
            given = margins.latency if metric.quantile == 0.5 else margins.latency_tail
        elif isinstance(metric, ErrorRateMetric):
            given = margins.error_rate
        elif isinstance(metric, ThroughputMetric):
            given = margins.throughput
    return None if given is None else float(given.percent) / 100


def _value(metric: Metric, window: Samples) -> float | None:
    if len(window) == 0:
        return None
    if isinstance(metric, LatencyMetric):
        latencies = window.latencies()
        return float(np.quantile(latencies, metric.quantile)) if latencies.size else None
    if isinstance(metric, ErrorRateMetric):
        return float(np.mean(window.errors(metric.errors)))
    if isinstance(metric, ThroughputMetric):
        span = max(window.end - window.start, 1e-9)
        return float(np.count_nonzero(window.ok)) / span
    return None


def current_value(
    metric: Metric, samples: RequestSamples, now: float, group: str, span: float = 2.0
) -> float | None:
    """The metric over the last ``span`` seconds of requests (whose answers are in)."""
    window = samples.window(now - span, now, group=_groups(group))
    return _value(metric, window)


def judged_data(metric: Metric, window: Samples) -> NDArray[np.float64] | NDArray[np.bool_]:
    """What :func:`chaoskit.stats.compare` takes for the metric's kind, from one window."""
    if isinstance(metric, LatencyMetric):
        return window.latencies()
    if isinstance(metric, ErrorRateMetric):
        return window.errors(metric.errors)
    if isinstance(metric, ThroughputMetric):
        return window.throughput(1.0)
    raise ValueError(f"metric {metric.name} is not judged from requests")


def per_second(
    metric: Metric,
    samples: RequestSamples,
    start: float,
    end: float,
    groups: Collection[str] | None,
) -> tuple[list[float], list[float]]:
    """The metric in consecutive one-second windows from ``start``: (window ends, values)."""
    times: list[float] = []
    values: list[float] = []
    steps = max(0, math.floor(end - start))
    for step in range(steps):
        window = samples.window(start + step, start + step + 1, group=groups)
        value = _value(metric, window)
        times.append(step + 1.0)
        values.append(math.nan if value is None else value)
    return times, values
