"""Declared limits tested on a window: a metric's ``max``/``min`` (its SLO) and the abort
thresholds, each as a one-sided test that says "clearly beyond" only when the data show it.

A latency limit is read as a share: ``p95 under 500ms`` holds while at most 5 % of requests
are slower than 500 ms (a failed request counts at the timeout); an error-rate limit is the
share of failed requests; a throughput floor is the mean of per-second counts; a probe's
limits are broken when most of its readings are outside them (a failed reading counts as
outside).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..load import Samples
from ..model import Experiment, Metric
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric, ThroughputMetric
from ..model.safety import AbortCondition
from ..safety.valve import threshold_value
from ..stats.limits import LimitCheck, beyond_limit

__all__ = [
    "Limit",
    "LimitFinding",
    "abort_limits",
    "check_limit",
    "declared_limits",
    "limit_of",
    "request_flags",
]

Side = Literal["above", "below"]


@dataclass(frozen=True)
class Limit:
    """One limit of one metric: broken when the metric is ``side`` of ``value``."""

    metric: Metric
    side: Side
    value: float
    """In base units: seconds, a fraction, per second, or the probe's number."""
    written: str
    """As the experiment says it, e.g. ``max 1%`` or ``abort above 20%``."""


@dataclass(frozen=True)
class LimitFinding:
    """A limit tested on one window."""

    limit: Limit
    check: LimitCheck

    @property
    def broken(self) -> bool:
        return self.check.broken

    def words(self) -> str:
        """What the window showed against the limit, for people."""
        metric, check = self.limit.metric, self.check
        if isinstance(metric, LatencyMetric):
            side = "slower" if self.limit.side == "above" else "faster"
            allowed = 1 - metric.quantile if self.limit.side == "above" else metric.quantile
            return (
                f"{metric.name} ({self.limit.written}): {_pct(check.estimate)} of requests "
                f"{side} than {self.limit.value * 1000:g}ms (at least {_pct(check.bound)}; at "
                f"most {_pct(allowed)} may be)"
            )
        if isinstance(metric, ErrorRateMetric):
            return (
                f"{metric.name} ({self.limit.written}): {_pct(check.estimate)} of requests "
                f"failed (at least {_pct(check.bound)})"
                if self.limit.side == "above"
                else f"{metric.name} ({self.limit.written}): {_pct(check.estimate)} failed"
            )
        if isinstance(metric, ThroughputMetric):
            return (
                f"{metric.name} ({self.limit.written}): {check.estimate:.4g} successful "
                f"answers/s (at most {check.bound:.4g})"
            )
        return (
            f"{metric.name} ({self.limit.written}): {_pct(check.estimate)} of readings outside "
            "the limit"
        )


def _pct(share: float) -> str:
    return f"{100 * share:.3g}%"


def declared_limits(metric: Metric) -> list[Limit]:
    """The metric's own ``max``/``min`` (its SLO), in base units."""
    found = []
    maximum = getattr(metric, "max", None)
    minimum = getattr(metric, "min", None)
    if maximum is not None:
        found.append(Limit(metric, "above", threshold_value(maximum), f"max {maximum}"))
    if minimum is not None:
        found.append(Limit(metric, "below", threshold_value(minimum), f"min {minimum}"))
    return found


def limit_of(condition: AbortCondition, metric: Metric) -> Limit:
    """An abort condition's threshold as a limit of its metric."""
    side: Side = "above" if condition.above is not None else "below"
    return Limit(metric, side, threshold_value(condition.limit), f"abort {side} {condition.limit}")


def abort_limits(experiment: Experiment) -> list[Limit]:
    """Every ``safety.abort_when`` threshold as a limit of its metric."""
    found = []
    for condition in experiment.safety.abort_when:
        metric = experiment.metric(condition.metric)
        if metric is not None:
            found.append(limit_of(condition, metric))
    return found


def request_flags(limit: Limit, window: Samples, timeout: float) -> tuple[NDArray[np.bool_], float]:
    """For a latency or error-rate limit: per request of ``window``, whether it counts against
    the limit, and the share of such requests beyond which the limit is broken. ``p95 above
    500ms`` is "more than 5 % slower than 500 ms"; ``errors below 1%`` is "more than 99 %
    answered"."""
    metric = limit.metric
    if isinstance(metric, LatencyMetric):
        latency = window.censored_latencies(timeout)
        if limit.side == "above":
            return latency > limit.value, 1 - metric.quantile
        return latency < limit.value, metric.quantile
    if not isinstance(metric, ErrorRateMetric):
        raise ValueError(f"a {metric.of} limit is not a share of requests")
    errors = window.errors(metric.errors)
    if limit.side == "above":
        return errors, limit.value
    return ~errors, 1 - limit.value


def check_limit(
    limit: Limit,
    *,
    requests: Iterable[Samples] | None = None,
    readings: NDArray[np.float64] | None = None,
    timeout: float,
    alpha: float,
    baseline: Samples | NDArray[np.float64] | None = None,
) -> LimitFinding:
    """Test ``limit`` on windows of requests (request metrics; several trials' fault phases
    count as one window) or on probe readings (their values, NaN where one failed). With
    ``baseline`` (its requests, or its readings), the window is taken to be as bursty as the
    baseline was, so that a block of failures reads as the breach it is."""
    metric = limit.metric
    if isinstance(metric, ProbeMetric):
        flags = _outside(limit, readings if readings is not None else np.array([]))
        reference = _outside(limit, baseline) if isinstance(baseline, np.ndarray) else None
        check = beyond_limit(flags, 0.5, side="above", alpha=alpha, reference=reference)
        return LimitFinding(limit, check)
    if requests is None:
        raise ValueError(f"metric {metric.name} is judged from requests: give them")
    values, share, side, value = _request_values(limit, requests, timeout)
    reference = None
    if isinstance(baseline, Samples):
        reference, *_ = _request_values(limit, [baseline], timeout)
    check = beyond_limit(values, value, side=side, alpha=alpha, share=share, reference=reference)
    return LimitFinding(limit, check)


def _outside(limit: Limit, readings: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Probe readings beyond the limit; a failed reading counts as beyond."""
    with np.errstate(invalid="ignore"):
        beyond = readings > limit.value if limit.side == "above" else readings < limit.value
    outside: NDArray[np.bool_] = np.isnan(readings) | beyond
    return outside


def _request_values(
    limit: Limit, windows: Iterable[Samples], timeout: float
) -> tuple[NDArray[Any], bool, Side, float]:
    """What the limit test takes from request windows: (values, whether they are shares, the
    side that breaks, the limit on their scale)."""
    if isinstance(limit.metric, ThroughputMetric):
        counts = _joined([w.throughput(1.0) for w in windows])
        return counts, False, limit.side, limit.value
    flagged = [request_flags(limit, w, timeout) for w in windows]
    share = flagged[0][1] if flagged else 0.0
    return _joined([flags for flags, _ in flagged]).astype(bool), True, "above", share


def _joined(parts: list[NDArray[Any]]) -> NDArray[Any]:
    return np.concatenate(parts) if parts else np.array([])
