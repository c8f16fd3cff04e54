"""The verdict of a run, from the load's samples and the probes' readings alone.

A metric is DEVIATED when the comparison shows a harmful change beyond its margin; when the
fault phase clearly breaks a limit the experiment declares (``max``/``min``), whatever the
margin test says; or, with a concurrent control group, when the control group itself got
clearly worse than in the baseline (the fault reached beyond the targets hit). The run is
DEVIATED when any metric is, or when a metric was not back within ``recover_within`` in any
trial (:mod:`.recovery`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from ..load import ProbeSeries, RequestSamples, Samples
from ..model import Experiment, Metric
from ..model.metrics import ProbeMetric
from ..model.result import Judged
from ..stats import (
    Judgement,
    SequentialDecision,
    Verdict,
    compare,
    judge_experiment,
    shown_beyond_margin,
)
from .limits import check_limit, declared_limits
from .measure import compare_metric, judged_data, probe_outside, sample_group, stats_kind
from .recovery import judge_recovery
from .steady import DRIFT_ALPHA
from .trials import Window

__all__ = ["Window", "judge_run", "probe_failures"]


def judge_run(
    experiment: Experiment,
    samples: RequestSamples,
    baseline: tuple[float, float],
    trials: list[Window],
    *,
    concurrent: bool,
    probes: dict[str, ProbeSeries] | None = None,
    sequential: dict[str, SequentialDecision] | None = None,
    stopped: str | None = None,
) -> Judged:
    """Per-metric judgements, recovery per trial and the overall verdict.

    Probe metrics are judged before/after (baseline against the fault phases) from their
    readings in ``probes``, whatever ``concurrent`` says: a probe is not split into groups.
    A metric a sequential test decided (``sequential``) takes that test's verdict, which is
    valid however early the look; the fixed-sample figures stay beside it. A run ``stopped``
    before its last trial because the system was not back in its steady state is DEVIATED.
    """
    alpha = experiment.hypothesis.alpha
    judgements: dict[str, Judgement] = {}
    skipped: dict[str, str] = {}
    decisive: list[str] = []
    judge = _Judge(experiment, samples, baseline, trials, concurrent)
    for metric in experiment.steady_state:
        if isinstance(metric, ProbeMetric):
            series = (probes or {}).get(metric.name)
            if series is None or not len(series):
                skipped[metric.name] = "the probe was never read"
                continue
            judgement = _judge_probe(metric, series, baseline, trials, alpha)
            parts = [series.window(t.fault_start, t.fault_end).value for t in trials]
            readings = np.concatenate(parts) if parts else np.array([])
            before = series.window(*baseline).value
            broken = judge.limits(metric, readings=readings, before=before)
        else:
            judgement = judge.compare(metric)
            broken = judge.limits(metric)
        decision = (sequential or {}).get(metric.name)
        if decision is not None and decision.verdict is not None:
            judgement = replace(
                judgement,
                verdict=decision.verdict,
                p_deviation=decision.p_value,
                basis="sequential",
                reason=f"{decision.verdict.value} by the sequential test (always-valid p = "
                f"{decision.p_value:.3g} after {decision.n[1]} requests)",
            )
        overriding = broken or (judge.spread(metric) if concurrent else None)
        if overriding is not None:
            judgement = _deviated(judgement, *overriding)
            decisive.append(metric.name)
        judgements[metric.name] = judgement
    critical = [m.name for m in experiment.steady_state if m.critical and m.name in judgements]
    overall = judge_experiment(judgements, critical, alpha=alpha, decisive=decisive)
    recovery = judge_recovery(
        experiment, samples, baseline, trials, concurrent=concurrent, probes=probes
    )
    given = experiment.hypothesis.recover_within
    late = [
        {"metric": name, "trial": t.trial, "seconds": t.seconds, "deadline": t.deadline,
         "reason": t.why_not(name, None if given is None else str(given))}
        for name, r in recovery.items()
        for t in r.failures()
    ]  # fmt: skip
    verdict, reason, classification = overall.verdict, overall.reason, overall.classification
    score = overall.score
    if late:  # a metric not back in time does not count as one that held
        slow = {str(f["metric"]) for f in late}
        kept = [n for n, j in judgements.items() if j.verdict is Verdict.HELD and n not in slow]
        score = min(score, 100.0 * len(kept) / max(len(judgements), 1))
        verdict, classification = Verdict.DEVIATED, "fail"
        names = ", ".join(sorted({str(f["metric"]) for f in late}))
        not_back = f"not recovered in time: {names}"
        reason = not_back if overall.verdict is not Verdict.DEVIATED else f"{reason}; {not_back}"
    if stopped is not None:
        reason = stopped if verdict is not Verdict.DEVIATED else f"{reason}; {stopped}"
        verdict, classification = Verdict.DEVIATED, "fail"
    return Judged.model_validate(
        _finite(
            {
                "comparison": "concurrent" if concurrent else "before_after",
                "verdict": verdict.value,
                "score": score,
                "classification": classification,
                "reason": reason,
                "deviated": overall.deviated,
                "adjusted_p": overall.adjusted_p,
                "metrics": [_judgement_json(name, j) for name, j in judgements.items()],
                "not_judged": skipped,
                "recovery": {name: r.to_json() for name, r in recovery.items()},
                "recovery_failures": late,
                "stopped_early": stopped,
            }
        )
    )


class _Judge:
    """The windows one run's request metrics are judged on."""

    def __init__(
        self,
        experiment: Experiment,
        samples: RequestSamples,
        baseline: tuple[float, float],
        trials: list[Window],
        concurrent: bool,
    ) -> None:
        self.exp = experiment
        self.samples = samples
        self.baseline = baseline
        self.trials = trials
        self.concurrent = concurrent
        self.timeout = experiment.load.timeout.seconds if experiment.load is not None else 2.0
        self.alpha = experiment.hypothesis.alpha

    def fault(self, group: str | None) -> Iterator[Samples]:
        """Each trial's fault phase, read when it is reached (one window in memory at once)."""
        for t in self.trials:
            yield self.samples.window(t.fault_start, t.fault_end, group=group)

    def data(self, metric: Metric, windows: Iterable[Samples]) -> Any:
        parts = [judged_data(metric, window, self.timeout) for window in windows]
        return np.concatenate(parts) if parts else np.array([])

    def compare(self, metric: Metric) -> Judgement:
        """The metric's comparison: experiment against control during the fault phases, or
        the fault phases against the baseline."""
        if self.concurrent:
            control = self.data(metric, self.fault("control"))
            treated = self.data(metric, self.fault("experiment"))
        else:
            control = self.data(metric, [self.samples.window(*self.baseline)])
            treated = self.data(metric, self.fault(None))
        return self._compare(metric, control, treated, self.alpha)

    def _compare(self, metric: Metric, control: Any, treated: Any, alpha: float) -> Judgement:
        return compare_metric(
            metric, control, treated,
            margins=self.exp.hypothesis.margins, timeout=self.timeout, alpha=alpha,
        )  # fmt: skip

    def limits(
        self, metric: Metric, readings: Any = None, before: Any = None
    ) -> tuple[str, str] | None:
        """("limit", why) when the fault phases clearly break a declared limit (tested as if
        as bursty as the baseline was)."""
        group = sample_group("experiment", metric, concurrent=self.concurrent)
        for limit in declared_limits(metric):
            finding = check_limit(
                limit,
                requests=None if readings is not None else self.fault(group),
                readings=readings,
                timeout=self.timeout,
                alpha=self.alpha,
                baseline=before
                if readings is not None
                else self.samples.window(*self.baseline, group=group),
            )
            if finding.broken:
                return "limit", f"the fault phase broke its declared limit: {finding.words()}"
        return None

    def spread(self, metric: Metric) -> tuple[str, str] | None:
        """("spread", why) when the control group got clearly worse than in the baseline."""
        if stats_kind(metric) is None:
            return None
        before = self.data(metric, [self.samples.window(*self.baseline, group="control")])
        during = self.data(metric, self.fault("control"))
        judgement = self._compare(metric, before, during, DRIFT_ALPHA)
        if not shown_beyond_margin(judgement) or judgement.effect is None:
            return None
        effect = judgement.effect
        return "spread", (
            "the control group got clearly worse too, against the baseline: "
            f"{effect.scale} {effect.estimate:.4g} [{effect.low:.4g}, {effect.high:.4g}] beyond "
            f"the margin {judgement.margin:.4g}: the fault reached beyond the targets hit"
        )


def _deviated(judgement: Judgement, basis: str, why: str) -> Judgement:
    if judgement.verdict is Verdict.DEVIATED:
        return replace(judgement, reason=f"{judgement.reason}; and {why}")
    return replace(
        judgement,
        verdict=Verdict.DEVIATED,
        basis=basis,
        reason=f"{why} (the comparison alone: {judgement.verdict.value}, {judgement.reason})",
    )


def _judgement_json(name: str, judgement: Judgement) -> dict[str, Any]:
    data = asdict(judgement)
    data["verdict"] = judgement.verdict.value
    data["metric"] = name
    finite: dict[str, Any] = _finite(data)
    return finite


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _judge_probe(
    metric: ProbeMetric,
    series: ProbeSeries,
    baseline: tuple[float, float],
    trials: list[Window],
    alpha: float,
) -> Judgement:
    """The probe's judgement; an inconclusive one says how often the probe failed and why."""
    judged = _compare_probe(metric, series, baseline, trials, alpha)
    failures = probe_failures(series)
    if judged.verdict is Verdict.INCONCLUSIVE and failures:
        return replace(judged, reason=f"{judged.reason}; {failures}")
    return judged


def _compare_probe(
    metric: ProbeMetric,
    series: ProbeSeries,
    baseline: tuple[float, float],
    trials: list[Window],
    alpha: float,
) -> Judgement:
    """A probe with ``min``/``max`` limits: the share of readings outside them (or failed) in
    the fault phases against the baseline's, as an error rate (``margin`` in points). Without
    limits: the readings themselves, as ratios like latency (``margin`` relative) — unless the
    probe failed clearly more often in the fault phases, which is a deviation by itself."""
    times, values = series.time, series.value
    before = (times >= baseline[0]) & (times < baseline[1])
    during = np.zeros(len(times), dtype=bool)
    for trial in trials:
        during |= (times >= trial.fault_start) & (times < trial.fault_end)
    share = float(metric.margin.percent) / 100 if metric.margin is not None else None
    if metric.min is not None or metric.max is not None:
        outside = probe_outside(metric, values)
        return compare(
            outside[before], outside[during], kind="error_rate", margin=share, alpha=alpha
        )
    failed = compare(
        np.isnan(values[before]), np.isnan(values[during]), kind="error_rate", alpha=alpha
    )
    if failed.verdict is Verdict.DEVIATED:  # a dead service fails its probes
        return replace(
            failed, kind="probe", basis="probe failures",
            reason=f"the probe failed far more often in the fault phase: {failed.reason}",
        )  # fmt: skip
    readings = values[~np.isnan(values)] if len(values) else values
    if readings.size and float(np.min(readings)) <= 0:
        return Judgement(
            Verdict.INCONCLUSIVE, math.nan, math.nan, None, math.nan,
            (int(before.sum()), int(during.sum())),
            "readings of zero or below cannot be compared as ratios: give the probe metric "
            "'min' or 'max' limits",
            kind="probe", direction=metric.direction,
        )  # fmt: skip
    margin = None if share is None else 1 + share  # a ratio above 1, whichever way is harmful
    return compare(
        values[before], values[during], kind="latency", margin=margin, alpha=alpha,
        direction=metric.direction,
    )  # fmt: skip


def probe_failures(series: ProbeSeries) -> str | None:
    """'the probe failed 40 of 52 readings; last: …', or None when none failed: why a probe
    metric had too little to compare."""
    if not series.errors:
        return None
    last = series.errors[max(series.errors)]
    return f"the probe failed {len(series.errors)} of {len(series)} readings; last: {last}"
