"""``hypothesis.sequential``: always-valid tests looked at every second of the fault phase, so
that a trial's fault phase ends as soon as the answer is known — a harmful change found (the
fault has shown its effect: keeping it on adds risk, not knowledge), or every metric held.

Each kind of request metric names its test (``measure.REQUEST_KINDS``): median latency is
watched with :class:`~chaoskit.stats.LatencyMSPRT`, error rates with
:class:`~chaoskit.stats.ErrorRateMixture` (which needs a concurrent control group). Other
metrics (tail quantiles, throughput, probes) have no sequential test: they are judged at the end
as usual, and while one of them is in the experiment only a deviation can end the phase early.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..load import RequestSamples, Samples
from ..model import Experiment, Metric
from ..stats import SequentialDecision, Verdict
from .measure import judged_data, request_kind

__all__ = ["SequentialWatch"]


class SequentialWatch:
    """The sequential tests of one run, fed one window of requests at a time."""

    def __init__(
        self,
        experiment: Experiment,
        samples: RequestSamples,
        baseline: tuple[float, float],
        *,
        concurrent: bool,
    ) -> None:
        self._samples = samples
        self._baseline = baseline
        self._concurrent = concurrent
        self._timeout = experiment.load.timeout.seconds if experiment.load else 2.0
        self._tests: dict[str, tuple[Any, Metric]] = {}
        self.unwatched: list[str] = []
        """Metrics without a sequential test (judged at the end only)."""
        self.decisions: dict[str, SequentialDecision] = {}
        self.looks = 0
        alpha = experiment.hypothesis.alpha
        rate = experiment.load.rate.per_second if experiment.load else 1.0
        horizon = max(50, int(rate * experiment.phases.fault.nanoseconds / 1e9))
        margins = experiment.hypothesis.margins
        for metric in experiment.steady_state:
            kind = request_kind(metric)
            test = kind.sequential(metric, margins, alpha, horizon, concurrent) if kind else None
            if test is not None:
                self._tests[metric.name] = (test, metric)
            else:
                self.unwatched.append(metric.name)

    @property
    def active(self) -> bool:
        """Whether any metric has a sequential test."""
        return bool(self._tests)

    def look(self, start: float, end: float) -> bool:
        """Feed the requests of ``[start, end)``; True once the fault phase may end."""
        first = self.looks == 0
        self.looks += 1
        for name, (test, metric) in self._tests.items():
            if name in self.decisions and self.decisions[name].verdict is not None:
                continue
            control: Samples | None
            if self._concurrent:
                control = self._samples.window(start, end, group="control")
                treated = self._samples.window(start, end, group="experiment")
            else:  # the baseline is the control, given once
                control = self._samples.window(*self._baseline) if first else None
                treated = self._samples.window(start, end)
            self.decisions[name] = test.update(
                _data(metric, control, self._timeout), _data(metric, treated, self._timeout)
            )
        verdicts = [d.verdict for d in self.decisions.values()]
        if Verdict.DEVIATED in verdicts:
            return True
        return (
            not self.unwatched
            and len(verdicts) == len(self._tests)
            and all(v is Verdict.HELD for v in verdicts)
        )

    def to_json(self) -> dict[str, Any]:
        """The decisions so far, for the result file."""
        return {
            name: {
                "verdict": None if d.verdict is None else d.verdict.value,
                "p_value": d.p_value,
                "low": d.low if math.isfinite(d.low) else None,
                "high": d.high if math.isfinite(d.high) else None,
                "n": list(d.n),
            }
            for name, d in self.decisions.items()
        }


def _data(metric: Metric, window: Samples | None, timeout: float) -> Any:
    """What the metric's test takes from ``window``: latencies (a failed request at the
    timeout), or error outcomes; nothing for the baseline after the first look."""
    if window is None:
        return np.array([])
    return judged_data(metric, window, timeout)
