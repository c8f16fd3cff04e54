"""Time to recovery per metric and trial, judged: a metric not back in its baseline band within
``hypothesis.recover_within`` (without one: by the end of the recovery phase) makes the run
DEVIATED.

Each metric is cut into one-second windows (a probe: its readings) from the trial's last revert
(which ends the fault phase, or comes earlier for a fault shorter than its phase); a window is
outside the band when the statistics say so (:func:`~chaoskit.stats.outside_rate` for error
rates, :func:`~chaoskit.stats.outside_band` otherwise), and :func:`~chaoskit.stats.recovered_at`
finds when it was back for good: after the last time it was out (two windows in a row), once
``hypothesis.hold`` has passed inside. A metric out at the revert never reads 0.0 s.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..load import ProbeSeries, RequestSamples
from ..model import Experiment, Metric
from ..model.experiment import Margins
from ..model.metrics import ErrorRateMetric, ProbeMetric
from ..stats import (
    TrialSummary,
    default_error_margin,
    outside_band,
    outside_rate,
    recovered_at,
    summarize_trials,
    was_outside,
)
from .measure import judged_margin, margin_share, per_second, per_second_counts, probe_outside
from .trials import Window

__all__ = ["MetricRecovery", "TrialRecovery", "judge_recovery"]

RELAPSE = 2
"""Windows outside the band in a row that count as being out (a single one is noise)."""


@dataclass(frozen=True)
class TrialRecovery:
    """One metric in one trial's recovery phase."""

    trial: int
    seconds: float | None
    """From the revert until it was back for good; None: not back by the end (censored)."""
    watched: float
    """How long the recovery phase was watched, in seconds."""
    deadline: float
    """``recover_within``, or the recovery phase itself when the experiment gives none."""
    out_at_revert: bool
    reverted: float = 0.0
    """When the trial's last fault was taken back (monotonic): where ``seconds`` count from."""

    @property
    def recovered(self) -> bool:
        """Back within the deadline."""
        return self.seconds is not None and self.seconds <= self.deadline + 1e-9

    def why_not(self, metric: str, given: str | None) -> str:
        """Why this trial counts against the run, in words."""
        if self.seconds is None:
            return (
                f"{metric} was not back in its baseline band for good (for the hold period) "
                f"by the end of the {self.watched:.0f}s it was watched after the revert in "
                f"trial {self.trial}"
            )
        return (
            f"{metric} took {self.seconds:.1f}s to recover in trial {self.trial}, beyond "
            f"recover_within ({given})"
        )


@dataclass(frozen=True)
class MetricRecovery:
    """One metric's recovery over every trial, or why it could not be measured."""

    metric: str
    trials: list[TrialRecovery]
    summary: TrialSummary | None
    reason: str | None = None
    """Why recovery was not measured (no baseline data, no recovery phase)."""

    def failures(self) -> list[TrialRecovery]:
        return [t for t in self.trials if not t.recovered]

    def to_json(self) -> dict[str, Any]:
        if self.summary is None:
            return {"reason": self.reason or "not measured"}
        return {
            **asdict(self.summary),
            "deadline": self.trials[0].deadline if self.trials else None,
            "trials": [
                {
                    "trial": t.trial,
                    "seconds": t.seconds,
                    "recovered": t.recovered,
                    "out_at_revert": t.out_at_revert,
                    "watched": t.watched,
                    "from": t.reverted,
                }
                for t in self.trials
            ],
        }


def judge_recovery(
    experiment: Experiment,
    samples: RequestSamples,
    baseline: tuple[float, float],
    trials: list[Window],
    *,
    concurrent: bool,
    probes: dict[str, ProbeSeries] | None = None,
) -> dict[str, MetricRecovery]:
    """Each metric's recovery in every trial (request metrics: the experiment group when there
    is a concurrent control)."""
    hypothesis = experiment.hypothesis
    hold_seconds = experiment.recovery_hold().nanoseconds / 1e9
    given = hypothesis.recover_within
    found: dict[str, MetricRecovery] = {}
    if experiment.phases.recovery.nanoseconds == 0 or not trials:
        why = "no recovery phase" if trials else "no trial finished"
        return {m.name: MetricRecovery(m.name, [], None, why) for m in experiment.steady_state}
    for metric in experiment.steady_state:
        series = _Series.of(
            experiment, metric, samples, probes or {}, concurrent=concurrent, baseline=baseline
        )
        if series is None:
            found[metric.name] = MetricRecovery(metric.name, [], None, "the probe was never read")
            continue
        if not series.has_baseline():
            found[metric.name] = MetricRecovery(
                metric.name, [], None, "fewer than 3 baseline windows with data"
            )
            continue
        hold = max(1, math.ceil(hold_seconds / series.step - 1e-9))
        results: list[TrialRecovery] = []
        for number, trial in enumerate(trials, start=1):
            watched = trial.recovery_end - trial.revert_at
            deadline = given.nanoseconds / 1e9 if given is not None else watched
            times, flags, before = series.flags(trial, hypothesis.alpha)
            if len(times) < hold:  # too short a phase to see the metric stay back: not judged
                results = []
                break
            out = was_outside(before, RELAPSE)
            seconds = recovered_at(
                times, flags, hold=hold, relapse=RELAPSE, outside_before=out, step=series.step
            )
            results.append(TrialRecovery(number, seconds, watched, deadline, out, trial.revert_at))
        if not results:
            found[metric.name] = MetricRecovery(
                metric.name, [], None, "the recovery phase is shorter than the hold period"
            )
            continue
        durations = [t.seconds if t.seconds is not None else t.watched for t in results]
        summary = summarize_trials(
            durations, [t.seconds is None for t in results], results[0].deadline
        )
        found[metric.name] = MetricRecovery(metric.name, results, summary)
    return found


_Flags = tuple[list[float], NDArray[np.float64], NDArray[np.float64]]
"""(window ends since the revert, flags for the recovery phase, flags for the last windows
before the revert)."""


class _Series(ABC):
    """One metric cut into windows (one second, or one probe reading) and tested against the
    baseline's band; the baseline is read once, for every trial. One subclass per kind of
    metric, chosen by :meth:`of`."""

    step: float = 1.0
    """Seconds a window spans."""

    def __init__(self, samples: RequestSamples, margins: Margins, baseline: tuple[float, float]):
        self.samples = samples
        self.margins = margins
        self.baseline = baseline

    @staticmethod
    def of(
        experiment: Experiment,
        metric: Metric,
        samples: RequestSamples,
        probes: dict[str, ProbeSeries],
        *,
        concurrent: bool,
        baseline: tuple[float, float],
    ) -> _Series | None:
        """The series of ``metric``; None for a probe that has no reading at all."""
        margins = experiment.hypothesis.margins
        if isinstance(metric, ProbeMetric):
            readings = probes.get(metric.name)
            if readings is None or not len(readings):
                return None
            return _ProbeWindows(metric, readings, samples, margins, baseline)
        groups = ["experiment"] if concurrent else None
        if isinstance(metric, ErrorRateMetric):
            return _ErrorRateWindows(metric, groups, samples, margins, baseline)
        timeout = experiment.load.timeout.seconds if experiment.load is not None else 2.0
        return _RequestWindows(metric, groups, timeout, samples, margins, baseline)

    @abstractmethod
    def has_baseline(self) -> bool:
        """Whether the baseline has enough windows to draw a band from."""

    def flags(self, trial: Window, alpha: float) -> _Flags:
        """Which windows of ``trial``'s recovery (and just before its revert) are outside."""
        return self._flags(trial.revert_at, trial.recovery_end, RELAPSE * self.step, alpha)

    @abstractmethod
    def _flags(self, start: float, end: float, lead: float, alpha: float) -> _Flags:
        """:meth:`flags` from the revert (``start``) to the recovery's ``end``, with the
        ``lead`` seconds before the revert."""


class _ProbeWindows(_Series):
    """A probe metric: one window a reading."""

    def __init__(
        self,
        metric: ProbeMetric,
        readings: ProbeSeries,
        samples: RequestSamples,
        margins: Margins,
        baseline: tuple[float, float],
    ) -> None:
        super().__init__(samples, margins, baseline)
        self.metric = metric
        self.readings = readings
        self.step = metric.interval.seconds

    @cached_property
    def _base_readings(self) -> NDArray[np.float64]:
        readings = self.readings.window(*self.baseline).value
        return readings[~np.isnan(readings)]

    def has_baseline(self) -> bool:
        return self._base_readings.size >= 3

    def _flags(self, start: float, end: float, lead: float, alpha: float) -> _Flags:
        metric = self.metric
        after = self.readings.window(start, end)
        prior = self.readings.window(start - lead, start).value
        times = [float(t) - start + self.step for t in after.time]
        values = np.concatenate([prior, after.value])
        if metric.min is not None or metric.max is not None:
            flags = probe_outside(metric, values).astype(float)
        else:
            share = margin_share(metric, self.margins) or 0.0
            flags = _outside(values, self._base_readings, metric.direction, share, alpha)
            flags[np.isnan(values)] = 1.0  # a failed reading is outside, as in the verdict
        return times, flags[prior.size :], flags[: prior.size]


class _ErrorRateWindows(_Series):
    """An error rate: per second, errors against requests, tested as proportions."""

    def __init__(
        self,
        metric: ErrorRateMetric,
        groups: list[str] | None,
        samples: RequestSamples,
        margins: Margins,
        baseline: tuple[float, float],
    ) -> None:
        super().__init__(samples, margins, baseline)
        self.metric = metric
        self.groups = groups

    @cached_property
    def _base_counts(self) -> tuple[list[int], list[int]]:
        _, errors, totals = per_second_counts(
            self.metric, self.samples, *self.baseline, self.groups
        )
        return errors, totals

    def has_baseline(self) -> bool:
        return sum(1 for n in self._base_counts[1] if n) >= 3

    def _flags(self, start: float, end: float, lead: float, alpha: float) -> _Flags:
        metric, groups = self.metric, self.groups
        be, bn = self._base_counts
        _, pe, pn = per_second_counts(metric, self.samples, start - lead, start, groups)
        times, re, rn = per_second_counts(metric, self.samples, start, end, groups)
        rate = sum(be) / max(sum(bn), 1)
        margin = judged_margin(metric, [rate], self.margins) or default_error_margin([rate])
        flags = outside_rate([*pe, *re], [*pn, *rn], be, bn, alpha=alpha, margin=margin)
        return times, flags[len(pe) :], flags[: len(pe)]


class _RequestWindows(_Series):
    """Any other metric of the requests (latency, throughput): one value a second."""

    def __init__(  # noqa: PLR0917 - built in one place, by _Series.of
        self,
        metric: Metric,
        groups: list[str] | None,
        timeout: float,
        samples: RequestSamples,
        margins: Margins,
        baseline: tuple[float, float],
    ) -> None:
        super().__init__(samples, margins, baseline)
        self.metric = metric
        self.groups = groups
        self.timeout = timeout

    @cached_property
    def _base_values(self) -> list[float]:
        _, values = self._values(*self.baseline)
        return [v for v in values if not math.isnan(v)]

    def has_baseline(self) -> bool:
        return len(self._base_values) >= 3

    def _flags(self, start: float, end: float, lead: float, alpha: float) -> _Flags:
        _, prior = self._values(start - lead, start)
        times, values = self._values(start, end)
        share = margin_share(self.metric, self.margins) or 0.0
        banded = _outside([*prior, *values], self._base_values, self.metric.direction, share, alpha)
        return times, banded[len(prior) :], banded[: len(prior)]

    def _values(self, start: float, end: float) -> tuple[list[float], list[float]]:
        return per_second(self.metric, self.samples, start, end, self.groups, timeout=self.timeout)


def _outside(
    values: Sequence[float] | NDArray[np.float64],
    known: Sequence[float] | NDArray[np.float64],
    direction: str,
    share: float,
    alpha: float,
) -> NDArray[np.float64]:
    """Flags of the windows outside the baseline's band, in the metric's harmful direction;
    a change within its margin (``share`` of the baseline's median) is never outside."""
    return outside_band(
        values,
        known,
        alpha=alpha,
        higher_is_worse=direction != "decrease",
        floor=abs(float(np.median(known))) * share,
        both_sides=direction == "both",
    )
