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

import numpy as np
from numpy.typing import NDArray

from ..load import ProbeSeries, RequestSamples, Samples
from ..model import Experiment, Metric
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric, ThroughputMetric
from ..model.safety import AbortCondition
from ..safety.valve import Reading
from .limits import Limit, limit_of, request_flags
from .measure import sample_group

__all__ = ["RunWatch", "window_for"]

_MIN_REQUESTS = 20
"""A trailing window holds at least this many requests' worth of time."""


def window_for(persistence: float, rate: float) -> float:
    """The trailing window (seconds) a condition with ``for: persistence`` is read over."""
    return max(min(max(persistence, 1.0), 2.0), _MIN_REQUESTS / rate)


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
        limit = limit_of(condition, metric)
        above = limit.side == "above"
        if isinstance(metric, ProbeMetric):
            return self._probe(metric, limit.value, above, now, condition.for_.nanoseconds / 1e9)
        span = window_for(condition.for_.nanoseconds / 1e9, self._rate)
        group = self._group(condition.group, metric)
        if isinstance(metric, ThroughputMetric):
            return self._throughput(limit.value, above, now, span, group)
        return self._share(limit, now, span, group)

    # -- live values -----------------------------------------------------------------------------

    def value(self, metric: Metric, group: str, now: float, span: float = 2.0) -> float | None:
        """The metric over the last ``span`` seconds of outcomes, for people."""
        if isinstance(metric, ProbeMetric):
            series = self._probes.get(metric.name)
            latest = None if series is None else series.latest
            return None if latest is None or math.isnan(latest) else latest
        return self._value(metric, self._recent(now, span, self._group(group)), span, now)

    # -- helpers ---------------------------------------------------------------------------------

    def _metric(self, name: str) -> Metric:
        metric = self._exp.metric(name)
        if metric is None:  # validation guarantees every condition names a metric
            raise KeyError(f"no steady-state metric called '{name}'")
        return metric

    def _group(self, group: str, metric: Metric | None = None) -> str | None:
        return sample_group(group, metric, concurrent=self.concurrent)

    def _recent(self, now: float, span: float, group: str | None) -> Samples:
        """Requests whose outcome became known in the last ``span`` seconds before ``now``."""
        view = self._samples.as_of(now, self._timeout, self._since(now, span), group=group)
        return view.where(view.ended > now - span)

    def _since(self, now: float, span: float) -> float:
        """The earliest due time whose outcome can fall in the last ``span`` seconds."""
        return now - span - self._timeout - 1.0

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

    def _share(self, limit: Limit, now: float, span: float, group: str | None) -> Reading:
        """A latency or error-rate condition: breached when the share of bad outcomes of the
        window is beyond the limit's share (:func:`~.limits.request_flags`)."""
        metric = limit.metric
        latency = isinstance(metric, LatencyMetric)
        slower = limit.value if latency and limit.side == "above" else None
        # A request waiting longer than a latency limit is already known to be slower than it.
        deadline = self._timeout if slower is None else min(self._timeout, slower)
        view = self._samples.as_of(now, deadline, self._since(now, span), group=group)
        bad, share = request_flags(limit, view, self._timeout)
        known = view.ended
        if slower is not None:
            known = np.where(bad, np.minimum(known, view.due + slower), known)
        recent = known > now - span
        if slower is not None and isinstance(metric, LatencyMetric):
            value = self._known_latency(metric, now, span, group, slower)
        else:  # the same view as _recent: the deadline is the load's timeout
            value = self._value(metric, view.where(recent), span, now)
        bad, known = bad[recent], known[recent]
        if not bad.size:
            return Reading(value, None)
        if float(np.mean(bad)) <= share:
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

    def _probe(
        self, metric: ProbeMetric, limit: float, above: bool, now: float, persistence: float
    ) -> Reading:
        """The latest reading against the limit; a failed reading (the probe got no answer)
        counts as beyond it, as in the probe's verdict: a dead service fails its probes. The
        breach is dated back over the recent readings only (enough to see it persist)."""
        series = self._probes.get(metric.name)
        if series is None or not len(series):
            return Reading(None, None)  # never read yet: it cannot tell
        horizon = max(60.0, 2 * persistence, 3 * metric.interval.seconds)
        recent = series.window(min(now - horizon, series.last_at))
        values, times = recent.value, recent.time

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
