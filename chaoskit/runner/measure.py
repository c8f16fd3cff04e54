"""Steady-state metrics computed from the load's samples: the per-request data the statistics
compare, and per-second series for recovery and the report's timelines.

Latency is taken over every request sent: a failed one (no answer, refused, reset, not sent,
or 5xx) counts as if it had taken the whole ``load.timeout`` — the slowest answer a client
would wait for (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..load import RequestSamples, Samples
from ..model import Metric
from ..model.experiment import Margins
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric, ThroughputMetric
from ..stats import Judgement, compare

__all__ = [
    "compare_metric",
    "judged_data",
    "judged_margin",
    "margin_share",
    "per_second",
    "per_second_counts",
    "probe_outside",
    "sample_group",
    "stats_kind",
    "window_value",
]


def sample_group(group: str, metric: Metric | None, *, concurrent: bool) -> str | None:
    """The sample group an abort condition or a limit on ``metric`` reads (None: every
    request): ``all``; ``experiment`` without a concurrent control (every request is exposed to
    the fault); and throughput's ``experiment`` (throughput is the whole service's: a group
    carries only its share of it)."""
    if group == "all" or (group == "experiment" and not concurrent):
        return None
    if group == "experiment" and isinstance(metric, ThroughputMetric):
        return None
    return group


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


def judged_margin(metric: Metric, control: Any, margins: Margins) -> float | None:
    """The margin the statistics use for ``metric``: its own, else ``hypothesis.margins``; for an
    error rate with an SLO (``max``) and no margin of its own, the room between the control's
    rate and the SLO (at least the statistics' floor of 0.05 points)."""
    if (
        metric.margin is None
        and isinstance(metric, ErrorRateMetric)
        and metric.max is not None
        and len(control)
    ):
        slo = float(metric.max.percent) / 100
        return max(slo - float(np.mean(control)), 0.0005)
    share = margin_share(metric, margins)
    if share is None:
        return None
    kind = stats_kind(metric)
    if kind == "error_rate":
        return share
    # The statistics take a ratio the way they need it, whichever direction is harmful:
    # below 1 for throughput, above 1 for latency.
    return 1 - share if kind == "throughput" else 1 + share


def compare_metric(
    metric: Metric,
    control: Any,
    treated: Any,
    *,
    margins: Margins,
    timeout: float,
    alpha: float,
) -> Judgement:
    """:func:`chaoskit.stats.compare` for a request metric: its kind, margin, harmful direction,
    tail quantile, and failures counted at the load's ``timeout``."""
    kind = stats_kind(metric)
    if kind is None:
        raise ValueError(f"metric {metric.name} is not judged from requests")
    quantile = metric.quantile if isinstance(metric, LatencyMetric) else None
    return compare(
        control,
        treated,
        kind=kind,  # type: ignore[arg-type]
        margin=judged_margin(metric, control, margins),
        alpha=alpha,
        direction=metric.direction,
        quantile=quantile if quantile != 0.5 else None,
        ceiling=timeout if kind == "latency" else None,
    )


def probe_outside(metric: ProbeMetric, values: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Per reading, whether it is outside the probe metric's ``min``/``max``; a failed reading
    (NaN) counts as outside: a dead service fails its probes."""
    low = -math.inf if metric.min is None else metric.min
    high = math.inf if metric.max is None else metric.max
    with np.errstate(invalid="ignore"):
        outside: NDArray[np.bool_] = np.isnan(values) | (values < low) | (values > high)
    return outside


def window_value(metric: Metric, window: Samples, timeout: float) -> float | None:
    """The metric over one window (None when it holds no request)."""
    if len(window) == 0:
        return None
    if isinstance(metric, LatencyMetric):
        return float(np.quantile(window.censored_latencies(timeout), metric.quantile))
    if isinstance(metric, ErrorRateMetric):
        return float(np.mean(window.errors(metric.errors)))
    if isinstance(metric, ThroughputMetric):
        span = max(window.end - window.start, 1e-9)
        return float(np.count_nonzero(window.ok)) / span
    return None


def judged_data(
    metric: Metric, window: Samples, timeout: float
) -> NDArray[np.float64] | NDArray[np.bool_]:
    """What :func:`chaoskit.stats.compare` takes for the metric's kind, from one window."""
    if isinstance(metric, LatencyMetric):
        return window.censored_latencies(timeout)
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
    *,
    timeout: float,
) -> tuple[list[float], list[float]]:
    """The metric in consecutive one-second windows from ``start``: (window ends, values)."""
    times: list[float] = []
    values: list[float] = []
    for step in range(max(0, math.floor(end - start))):
        window = samples.window(start + step, start + step + 1, group=groups)
        value = window_value(metric, window, timeout)
        times.append(step + 1.0)
        values.append(math.nan if value is None else value)
    return times, values


def per_second_counts(
    metric: ErrorRateMetric,
    samples: RequestSamples,
    start: float,
    end: float,
    groups: Collection[str] | None,
) -> tuple[list[float], list[int], list[int]]:
    """Errors and requests in consecutive one-second windows from ``start``: (window ends,
    errors, requests)."""
    times: list[float] = []
    errors: list[int] = []
    totals: list[int] = []
    for step in range(max(0, math.floor(end - start))):
        window = samples.window(start + step, start + step + 1, group=groups)
        times.append(step + 1.0)
        errors.append(int(np.count_nonzero(window.errors(metric.errors))))
        totals.append(len(window))
    return times, errors, totals
