"""Steady-state metrics computed from the load's samples: the per-request data the statistics
compare, and per-second series for recovery and the report's timelines.

Latency is taken over every request sent: a failed one (no answer, refused, reset, not sent,
or 5xx) counts as if it had taken the whole ``load.timeout`` — the slowest answer a client
would wait for (docs/statistics.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..load import RequestSamples, Samples
from ..model import Metric
from ..model.experiment import Margins
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric, ThroughputMetric
from ..stats import ErrorRateMixture, Judgement, LatencyMSPRT, compare
from ..units import Percent

__all__ = [
    "REQUEST_KINDS",
    "RequestKind",
    "compare_metric",
    "judged_data",
    "judged_margin",
    "margin_share",
    "per_second",
    "per_second_counts",
    "probe_outside",
    "request_kind",
    "sample_group",
    "stats_kind",
    "window_value",
]


@dataclass(frozen=True)
class RequestKind:
    """How one kind of request metric (latency, error rate, throughput) is measured and judged:
    the one place that knows the kinds, so that no function asks a metric what it is."""

    stats: Literal["latency", "error_rate", "throughput"]
    """The statistics' name for it (:func:`chaoskit.stats.compare`)."""
    default_margin: Callable[[Any, Margins], Percent | None]
    """The experiment's ``hypothesis.margins`` entry for it."""
    data: Callable[[Any, Samples, float], NDArray[np.float64] | NDArray[np.bool_]]
    """What the statistics compare, from one window (the load's timeout given)."""
    value: Callable[[Any, Samples, float], float]
    """Its value over one window that holds requests."""
    unit: tuple[str, float]
    """The axis label of a timeline, and the factor from stored values to shown ones."""
    whole_service: bool = False
    """Read over every request even for the experiment group (a group carries only its share
    of throughput)."""
    sequential: Callable[[Any, Margins, float, int, bool], Any] = lambda *_: None
    """Its always-valid test for ``hypothesis.sequential`` (given the metric, the margins,
    alpha, the horizon in requests and whether the control is concurrent), or None."""


def _throughput(window: Samples) -> float:
    return float(np.count_nonzero(window.ok)) / max(window.end - window.start, 1e-9)


REQUEST_KINDS: dict[type, RequestKind] = {
    LatencyMetric: RequestKind(
        "latency",
        lambda m, g: g.latency if m.quantile == 0.5 else g.latency_tail,
        lambda m, w, timeout: w.censored_latencies(timeout),
        lambda m, w, timeout: float(np.quantile(w.censored_latencies(timeout), m.quantile)),
        ("ms", 1000.0),
        sequential=lambda m, margins, alpha, horizon, concurrent: (
            LatencyMSPRT(alpha=alpha, margin=1 + (margin_share(m, margins) or 0.0), horizon=horizon)
            if m.quantile == 0.5
            else None
        ),
    ),
    ErrorRateMetric: RequestKind(
        "error_rate",
        lambda m, g: g.error_rate,
        lambda m, w, timeout: w.errors(m.errors),
        lambda m, w, timeout: float(np.mean(w.errors(m.errors))),
        ("% of requests", 100.0),
        sequential=lambda m, margins, alpha, horizon, concurrent: (
            ErrorRateMixture(alpha=alpha) if concurrent else None
        ),
    ),
    ThroughputMetric: RequestKind(
        "throughput",
        lambda m, g: g.throughput,
        lambda m, w, timeout: w.throughput(1.0),
        lambda m, w, timeout: _throughput(w),
        ("requests/s", 1.0),
        whole_service=True,
    ),
}
"""Each kind of metric judged from the load's requests (a probe metric is none of them)."""


def request_kind(metric: Metric | None) -> RequestKind | None:
    """The kind of ``metric`` if it is judged from requests, else None (a probe)."""
    return REQUEST_KINDS.get(type(metric))


def sample_group(group: str, metric: Metric | None, *, concurrent: bool) -> str | None:
    """The sample group an abort condition or a limit on ``metric`` reads (None: every
    request): ``all``; ``experiment`` without a concurrent control (every request is exposed to
    the fault); and throughput's ``experiment`` (throughput is the whole service's: a group
    carries only its share of it)."""
    if group == "all" or (group == "experiment" and not concurrent):
        return None
    kind = request_kind(metric)
    if group == "experiment" and kind is not None and kind.whole_service:
        return None
    return group


def stats_kind(metric: Metric) -> Literal["latency", "error_rate", "throughput"] | None:
    """The statistics' name for the metric's kind; None for metrics not judged from requests."""
    kind = request_kind(metric)
    return None if kind is None else kind.stats


def margin_share(metric: Metric, margins: Margins) -> float | None:
    """The metric's own margin, else the experiment's default for its kind, as a fraction
    (None: the statistics' own default)."""
    given = metric.margin
    kind = request_kind(metric)
    if given is None and kind is not None:
        given = kind.default_margin(metric, margins)
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
        kind=kind,
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
    kind = request_kind(metric)
    if len(window) == 0 or kind is None:
        return None
    return kind.value(metric, window, timeout)


def judged_data(
    metric: Metric, window: Samples, timeout: float
) -> NDArray[np.float64] | NDArray[np.bool_]:
    """What :func:`chaoskit.stats.compare` takes for the metric's kind, from one window."""
    kind = request_kind(metric)
    if kind is None:
        raise ValueError(f"metric {metric.name} is not judged from requests")
    return kind.data(metric, window, timeout)


def _seconds(
    samples: RequestSamples,
    start: float,
    end: float,
    groups: Collection[str] | None,
    width: float = 1.0,
) -> list[Samples]:
    """The requests of each whole ``width`` seconds from ``start`` up to ``end``, read at
    once."""
    steps = max(0, math.floor((end - start) / width + 1e-9))
    whole = samples.window(start, start + steps * width, group=groups)
    return whole.split([start + step * width for step in range(steps + 1)])


def per_second(
    metric: Metric,
    samples: RequestSamples,
    start: float,
    end: float,
    groups: Collection[str] | None,
    *,
    timeout: float,
    width: float = 1.0,
) -> tuple[list[float], list[float]]:
    """The metric in consecutive one-second windows from ``start`` (``width``-second ones to
    draw a long run): (window ends, values)."""
    times: list[float] = []
    values: list[float] = []
    for step, window in enumerate(_seconds(samples, start, end, groups, width)):
        value = window_value(metric, window, timeout)
        times.append((step + 1) * width)
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
    for step, window in enumerate(_seconds(samples, start, end, groups)):
        times.append(step + 1.0)
        errors.append(int(np.count_nonzero(window.errors(metric.errors))))
        totals.append(len(window))
    return times, errors, totals
