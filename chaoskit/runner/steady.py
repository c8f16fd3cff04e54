"""Is there a steady state before anything is injected? Checked on the baseline, as Chaos
Toolkit checks its hypothesis before the method; if not, no fault is applied.

The baseline is not steady when, on every request (or every reading of a probe):

- a declared limit (a metric's ``max``/``min``) or an abort threshold is clearly broken
  already (:mod:`.limits`);
- most requests failed (more than half, shown at ``alpha``): the system is not up;
- a request metric clearly got worse within the baseline: its second half is beyond its first
  by more than the metric's margin, shown at alpha = 0.001 (a queue that keeps growing, an
  error rate that keeps climbing). So strict a test almost never stops a healthy system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..load import ProbeSeries, RequestSamples, Samples
from ..model import Experiment
from ..model.metrics import ProbeMetric
from ..stats import shown_beyond_margin
from ..stats.limits import beyond_limit
from .limits import abort_limits, check_limit, declared_limits
from .measure import compare_metric, judged_data, stats_kind

__all__ = ["DRIFT_ALPHA", "SteadyCheck", "check_steady"]

DRIFT_ALPHA = 0.001
"""The test level at which a metric getting worse within the baseline stops the run."""


@dataclass(frozen=True)
class SteadyCheck:
    """The baseline's verdict on itself: steady, or every reason it is not."""

    problems: list[str] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"held": self.held, "problems": list(self.problems)}


def check_steady(
    experiment: Experiment,
    samples: RequestSamples,
    probes: dict[str, ProbeSeries],
    baseline: tuple[float, float],
    *,
    now: float,
    drift: bool = True,
) -> SteadyCheck:
    """Check the baseline ``[start, end)`` as it stands at ``now`` (a request still waiting
    past its deadline has failed). Without ``drift``, only the limits and "most requests
    failed": what tells whether a system is back before another trial."""
    alpha = experiment.hypothesis.alpha
    timeout = experiment.load.timeout.seconds if experiment.load is not None else 2.0
    start, end = baseline
    requests = samples.as_of(now, timeout, start).between(start, end)
    problems: list[str] = []
    limits = [lim for metric in experiment.steady_state for lim in declared_limits(metric)]
    for limit in [*limits, *abort_limits(experiment)]:
        readings = None
        if isinstance(limit.metric, ProbeMetric):
            series = probes.get(limit.metric.name)
            readings = series.window(start, end).value if series is not None else None
        finding = check_limit(
            limit, requests=[requests], readings=readings, timeout=timeout, alpha=alpha
        )
        if finding.broken:
            problems.append(f"already beyond its limit: {finding.words()}")
    if len(requests):
        failed = requests.errors()
        most = beyond_limit(failed, 0.5, side="above", alpha=alpha)
        if most.broken:
            problems.append(
                f"the system is not up: {100 * most.estimate:.3g}% of the baseline's "
                f"{len(requests)} requests failed"
                + (f" ({_first_error(samples)})" if samples.first_errors else "")
            )
    if drift:
        problems += _drifts(experiment, requests, (start, end), timeout)
    return SteadyCheck(problems)


def _drifts(
    experiment: Experiment, requests: Samples, baseline: tuple[float, float], timeout: float
) -> list[str]:
    """Request metrics clearly worse in the baseline's second half than in its first."""
    middle = (baseline[0] + baseline[1]) / 2
    first = requests.between(baseline[0], middle)
    second = requests.between(middle, baseline[1])
    found = []
    for metric in experiment.steady_state:
        kind = stats_kind(metric)
        if kind is None:
            continue
        judgement = compare_metric(
            metric,
            judged_data(metric, first, timeout),
            judged_data(metric, second, timeout),
            margins=experiment.hypothesis.margins,
            timeout=timeout,
            alpha=DRIFT_ALPHA,
        )
        if shown_beyond_margin(judgement) and judgement.effect is not None:
            effect = judgement.effect
            found.append(
                f"{metric.name} got worse within the baseline itself: its second half against "
                f"its first, {effect.scale} {effect.estimate:.3g} [{effect.low:.3g}, "
                f"{effect.high:.3g}], beyond its margin {judgement.margin:.3g}"
            )
    return found


def _first_error(samples: RequestSamples) -> str:
    label, message = next(iter(samples.first_errors.items()))
    return f"first {label}: {message}"
