"""What the safety valve sees: each abort condition read from the run's samples as of now.

- A request still waiting at its deadline (due + ``load.timeout``) has failed at that
  deadline, and one waiting longer than a latency limit is known to be slower than it: an
  outage made of hangs is seen as soon as the data can show it, not when clients give up.
- Request metrics are read over a trailing window of outcomes (``for`` clamped to 1–2 s, and
  at least 20 requests' worth). When that window goes beyond the limit while the latest
  outcomes are an unbroken run of failures, the breach is dated from the first failure of the
  run, so a hard outage trips ``for`` after its first failure whatever the window's own lag;
  otherwise (a partial outage, noise) from the check that saw it. A breach has lasted until
  its latest bad outcome: a burst that has ended does not go on lasting while the window
  forgets it.
- Without a concurrent control group, ``group: experiment`` watches every request: they are all
  exposed to the fault.

The rules are documented in docs/experiment-file.md (safety).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..load import ProbeSeries, RequestSamples, Samples
from ..model import Experiment, Metric
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric, ThroughputMetric
from ..model.safety import AbortCondition
from ..safety.valve import Reading, threshold_value

__all__ = ["RunWatch", "window_for"]

_MIN_REQUESTS = 20
"""A trailing window holds at least this many requests' worth of time."""


def window_for(persistence: float, rate: float) -> float:
    """The trailing window (seconds) a condition with ``for: persistence`` is read over."""
    return max(min(max(persistence, 1.0), 2.0), _MIN_REQUESTS / rate)


@dataclass(frozen=True)
class _Share:
    """A request condition as a share: breached when more than ``share`` of the requests are
    bad. ``p95 above 1s`` is "more than 5 % slower than 1 s"; ``errors above 20%`` is "more
    than 20 % failed"."""

    share: float
    latency_limit: float | None
    """For a latency condition: the limit a bad request is slower (or faster) than."""
    above: bool


class RunWatch:
    """Reads abort conditions and live metric values from one run's samples and probes."""

    def __init__(
        self,
        experiment: Experiment,
        samples: RequestSamples,
        probes: dict[str, ProbeSeries],
        *,
        concurrent: bool = False,
    ) -> None:
        self._exp = experiment
        self._samples = samples
        self._probes = probes
        self.concurrent = concurrent
        load = experiment.load
        self._timeout = load.timeout.seconds if load is not None else 2.0
        self._rate = load.rate.per_second if load is not None else 1.0

    # -- the valve's Watch -----------------------------------------------------------------------

    def scope(self, condition: AbortCondition) -> str:
        """The traffic ``condition`` watches, in words."""
        metric = self._metric(condition.metric)
        if isinstance(metric, ProbeMetric):
            return "probe readings"
        group = self._group(condition.group, metric)
        return "all requests" if group is None else f"the {group} group"

    def read(self, condition: AbortCondition, now: float) -> Reading:
        """The condition's metric as of ``now``, and whether (and since when) it is breached."""
        metric = self._metric(condition.metric)
        limit = threshold_value(condition.limit)
        above = condition.above is not None
        if isinstance(metric, ProbeMetric):
            return self._probe(metric, limit, above)
        span = window_for(condition.for_.nanoseconds / 1e9, self._rate)
        group = self._group(condition.group, metric)
        if isinstance(metric, ThroughputMetric):
            return self._throughput(limit, above, now, span, group)
        rule = _rule(metric, limit, above)
        return self._share(metric, rule, now, span, group)

    # -- live values -----------------------------------------------------------------------------

    def value(self, metric: Metric, group: str, now: float, span: float = 2.0) -> float | None:
        """The metric over the last ``span`` seconds of outcomes, for people."""
        if isinstance(metric, ProbeMetric):
            series = self._probes.get(metric.name)
            if series is None or not len(series):
                return None
            latest = float(series.value[-1])
            return None if math.isnan(latest) else latest
        return self._value(metric, self._recent(now, span, self._group(group)), span, now)

    # -- helpers ---------------------------------------------------------------------------------

    def _metric(self, name: str) -> Metric:
        metric = self._exp.metric(name)
        if metric is None:  # validation guarantees every condition names a metric
            raise KeyError(f"no steady-state metric called '{name}'")
        return metric

    def _group(self, group: str, metric: Metric | None = None) -> str | None:
        """The sample group a condition reads: none (every request) for ``all``, for the
        experiment group without a concurrent control, and for throughput's experiment group
        (throughput is the whole service's: a group carries only its share of it)."""
        if group == "all" or (group == "experiment" and not self.concurrent):
            return None
        if group == "experiment" and isinstance(metric, ThroughputMetric):
            return None
        return group

    def _recent(self, now: float, span: float, group: str | None) -> Samples:
        """Requests whose outcome became known in the last ``span`` seconds before ``now``."""
        view = self._samples.as_of(now, self._timeout, now - span - self._timeout - 1.0)
        view = view if group is None else view.of_group(group)
        return view.where(view.ended > now - span)

    def _value(self, metric: Metric, view: Samples, span: float, now: float) -> float | None:
        if isinstance(metric, ThroughputMetric):
            return float(np.count_nonzero(view.ok)) / span
        if isinstance(metric, LatencyMetric):
            # A request still waiting is known to take at least its age so far: the quantile
            # of what is known is a lower bound of the truth, never an answer from the past.
            ages = self._samples.waiting(now - span, now)
            known = np.concatenate(
                [view.censored_latencies(self._timeout), ages[ages < self._timeout]]
            )
            return float(np.quantile(known, metric.quantile)) if known.size else None
        if not len(view):
            return None
        if isinstance(metric, ErrorRateMetric):
            return float(np.mean(view.errors(metric.errors)))
        return None

    def _share(
        self, metric: Metric, rule: _Share, now: float, span: float, group: str | None
    ) -> Reading:
        slower = rule.latency_limit if rule.latency_limit is not None and rule.above else None
        value = (
            self._known_latency(metric, now, span, group, slower)
            if slower is not None and isinstance(metric, LatencyMetric)
            else self._value(metric, self._recent(now, span, group), span, now)
        )
        # A request waiting longer than a latency limit is already known to be slower than it.
        deadline = self._timeout if slower is None else min(self._timeout, slower)
        view = self._samples.as_of(now, deadline, now - span - self._timeout - 1.0)
        view = view if group is None else view.of_group(group)
        bad = _bad(metric, rule, view, self._timeout)
        known = view.ended
        if slower is not None:
            known = np.where(bad, np.minimum(known, view.due + slower), known)
        recent = known > now - span
        bad, known = bad[recent], known[recent]
        if not bad.size:
            return Reading(value, None)
        if float(np.mean(bad)) <= rule.share:
            return Reading(value, False)
        return Reading(value, True, _run_start(known, bad), until=float(np.max(known[bad])))

    def _known_latency(
        self, metric: LatencyMetric, now: float, span: float, group: str | None, limit: float
    ) -> float | None:
        """The latency quantile over what is known of the window, as the valve judges it: the
        answers, and the requests already waiting longer than ``limit`` (at their age so far,
        a lower bound) — so the value shown agrees with the breach (for people: the breach
        itself is decided on the share of requests slower than the limit)."""
        answered = self._recent(now, span, group)
        waited = self._samples.waiting(now - span - self._timeout, now)
        if group not in (None, self._samples.fallback_group):
            waited = waited[:0]  # a request still waiting has no group but the fallback
        known = np.concatenate(
            [
                answered.censored_latencies(self._timeout),
                waited[(waited > limit) & (waited < self._timeout)],  # the rest: timed out
            ]
        )
        return float(np.quantile(known, metric.quantile)) if known.size else None

    def _throughput(
        self, limit: float, above: bool, now: float, span: float, group: str | None
    ) -> Reading:
        first = self._samples.first_due
        value = float(np.count_nonzero(self._recent(now, span, group).ok)) / span
        if first is None or now - first < span + self._timeout:
            return Reading(value if first is not None else None, None)  # still ramping up
        return Reading(value, value > limit if above else value < limit)

    def _probe(self, metric: ProbeMetric, limit: float, above: bool) -> Reading:
        """The latest reading against the limit; a failed reading (the probe got no answer)
        counts as beyond it, as in the probe's verdict: a dead service fails its probes."""
        series = self._probes.get(metric.name)
        if series is None or not len(series):
            return Reading(None, None)  # never read yet: it cannot tell
        values, times = series.value, series.time

        def beyond(value: float) -> bool:
            return math.isnan(value) or (value > limit if above else value < limit)

        latest = float(values[-1])
        shown = None if math.isnan(latest) else latest
        if not beyond(latest):
            return Reading(shown, False)
        since = float(times[-1])
        for at, value in zip(times[::-1], values[::-1], strict=True):
            if not beyond(float(value)):
                break
            since = float(at)
        return Reading(shown, True, since)


def _run_start(known: NDArray[np.float64], bad: NDArray[np.bool_]) -> float | None:
    """When the run of bad outcomes that ends now began (None: the last outcome was good, so
    the breach is dated from the check that saw it)."""
    order = np.argsort(known, kind="stable")
    in_order = bad[order]
    if not in_order[-1]:
        return None
    good = np.flatnonzero(~in_order)
    first = int(good[-1]) + 1 if good.size else 0
    return float(known[order][first])


def _rule(metric: Metric, limit: float, above: bool) -> _Share:
    if isinstance(metric, LatencyMetric):
        share = 1 - metric.quantile if above else metric.quantile
        return _Share(share, limit, above)
    return _Share(limit if above else 1 - limit, None, above)


def _bad(metric: Metric, rule: _Share, view: Samples, timeout: float) -> NDArray[np.bool_]:
    if isinstance(metric, LatencyMetric) and rule.latency_limit is not None:
        latency = view.censored_latencies(timeout)
        return latency > rule.latency_limit if rule.above else latency < rule.latency_limit
    assert isinstance(metric, ErrorRateMetric)
    errors = view.errors(metric.errors)
    return errors if rule.above else ~errors
