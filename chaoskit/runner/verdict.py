"""The verdict of a run: each steady-state metric compared by the statistics, time to
recovery per trial, and the experiment's overall verdict — from the load's samples alone."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..load import ProbeSeries, RequestSamples, Samples
from ..model import Experiment, Metric
from ..model.experiment import Margins
from ..model.metrics import ErrorRateMetric, LatencyMetric, ProbeMetric
from ..stats import (
    Judgement,
    SequentialDecision,
    Verdict,
    compare,
    judge_experiment,
    recovery_time,
    summarize_trials,
)
from .measure import judged_data, margin_share, per_second, stats_kind

__all__ = ["Window", "judge_run"]


@dataclass(frozen=True)
class Window:
    """One trial's times (monotonic seconds): fault phase and recovery phase."""

    fault_start: float
    fault_end: float
    recovery_end: float


def _concat(windows: list[Samples], metric: Metric) -> Any:
    parts = [judged_data(metric, window) for window in windows]
    return np.concatenate(parts) if parts else np.array([])


def _margin(metric: Metric, control: Any, margins: Margins) -> float | None:
    """The margin the metric gives, else ``hypothesis.margins``; for an error rate with an SLO
    (``max``) and no margin of its own, the room between the control's rate and the SLO (at
    least the statistics' floor of 0.05 points)."""
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
    return (
        share
        if stats_kind(metric) == "error_rate"
        else (1 + share if metric.direction != "decrease" else 1 - share)
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


def judge_run(
    experiment: Experiment,
    samples: RequestSamples,
    baseline: tuple[float, float],
    trials: list[Window],
    *,
    concurrent: bool,
    probes: dict[str, ProbeSeries] | None = None,
    sequential: dict[str, SequentialDecision] | None = None,
) -> dict[str, Any]:
    """Per-metric judgements, the overall verdict and time to recovery, as plain JSON.

    Probe metrics are judged before/after (baseline against the fault phases) from their
    readings in ``probes``, whatever ``concurrent`` says: a probe is not split into groups.
    A metric a sequential test decided (``sequential``) takes that test's verdict, which is
    valid however early the look; the fixed-sample figures stay beside it.
    """
    alpha = experiment.hypothesis.alpha
    judgements: dict[str, Judgement] = {}
    skipped: dict[str, str] = {}
    for metric in experiment.steady_state:
        if isinstance(metric, ProbeMetric):
            series = (probes or {}).get(metric.name)
            if series is None or not len(series):
                skipped[metric.name] = "the probe was never read"
            else:
                judgements[metric.name] = _judge_probe(metric, series, baseline, trials, alpha)
            continue
        kind = stats_kind(metric)
        assert kind is not None  # every metric but a probe is judged from requests
        if concurrent:
            control = _concat(
                [samples.window(t.fault_start, t.fault_end, group="control") for t in trials],
                metric,
            )
            treated = _concat(
                [samples.window(t.fault_start, t.fault_end, group="experiment") for t in trials],
                metric,
            )
        else:
            control = judged_data(metric, samples.window(*baseline))
            treated = _concat([samples.window(t.fault_start, t.fault_end) for t in trials], metric)
        quantile = (
            metric.quantile
            if isinstance(metric, LatencyMetric) and metric.quantile != 0.5
            else None
        )
        judgements[metric.name] = compare(
            control,
            treated,
            kind=kind,  # type: ignore[arg-type]
            margin=_margin(metric, control, experiment.hypothesis.margins),
            alpha=alpha,
            direction=metric.direction,
            quantile=quantile,
        )
    for name, decision in (sequential or {}).items():
        if decision.verdict is not None and name in judgements:
            judgements[name] = replace(
                judgements[name],
                verdict=decision.verdict,
                p_deviation=decision.p_value,
                reason=f"{decision.verdict.value} by the sequential test (always-valid p = "
                f"{decision.p_value:.3g} after {decision.n[1]} requests)",
            )
    critical = [m.name for m in experiment.steady_state if m.critical and m.name in judgements]
    overall = judge_experiment(judgements, critical, alpha=alpha)
    recovery = _recovery(experiment, samples, baseline, trials, concurrent)
    result: dict[str, Any] = _finite(
        {
            "comparison": "concurrent" if concurrent else "before_after",
            "verdict": overall.verdict.value,
            "score": overall.score,
            "classification": overall.classification,
            "reason": overall.reason,
            "deviated": overall.deviated,
            "adjusted_p": overall.adjusted_p,
            "metrics": [_judgement_json(name, j) for name, j in judgements.items()],
            "not_judged": skipped,
            "recovery": recovery,
        }
    )
    return result


def _judge_probe(
    metric: ProbeMetric,
    series: ProbeSeries,
    baseline: tuple[float, float],
    trials: list[Window],
    alpha: float,
) -> Judgement:
    """A probe with ``min``/``max`` limits: the share of readings outside them (or failed) in
    the fault phases against the baseline's, as an error rate (``margin`` in points). Without
    limits: the readings themselves, as ratios like latency (``margin`` relative)."""
    times, values = series.time, series.value
    before = (times >= baseline[0]) & (times < baseline[1])
    during = np.zeros(len(times), dtype=bool)
    for trial in trials:
        during |= (times >= trial.fault_start) & (times < trial.fault_end)
    share = float(metric.margin.percent) / 100 if metric.margin is not None else None
    if metric.min is not None or metric.max is not None:
        low = -math.inf if metric.min is None else metric.min
        high = math.inf if metric.max is None else metric.max
        with np.errstate(invalid="ignore"):
            outside = np.isnan(values) | (values < low) | (values > high)
        return compare(
            outside[before], outside[during], kind="error_rate", margin=share, alpha=alpha
        )
    readings = values[~np.isnan(values)] if len(values) else values
    if readings.size and float(np.min(readings)) <= 0:
        return Judgement(
            Verdict.INCONCLUSIVE, math.nan, math.nan, None, math.nan,
            (int(before.sum()), int(during.sum())),
            "readings of zero or below cannot be compared as ratios: give the probe metric "
            "'min' or 'max' limits",
            kind="probe", direction=metric.direction,
        )  # fmt: skip
    margin = None if share is None else (1 - share if metric.direction == "decrease" else 1 + share)
    return compare(
        values[before], values[during], kind="latency", margin=margin, alpha=alpha,
        direction=metric.direction,
    )  # fmt: skip


def _recovery(
    experiment: Experiment,
    samples: RequestSamples,
    baseline: tuple[float, float],
    trials: list[Window],
    concurrent: bool,
) -> dict[str, Any]:
    """Seconds from each revert until each metric is back in its baseline band."""
    groups = ["experiment"] if concurrent else None
    within = experiment.hypothesis.recover_within
    deadline = within.nanoseconds / 1e9 if within is not None else None
    found: dict[str, Any] = {}
    for metric in experiment.steady_state:
        if stats_kind(metric) is None:
            continue
        _, base = per_second(metric, samples, *baseline, groups)
        base_values = [v for v in base if not math.isnan(v)]
        if len(base_values) < 3:
            found[metric.name] = {"reason": "fewer than 3 baseline seconds with data"}
            continue
        durations: list[float] = []
        censored: list[bool] = []
        for trial in trials:
            times, values = per_second(metric, samples, trial.fault_end, trial.recovery_end, groups)
            seconds = (
                recovery_time(
                    times, values, base_values, higher_is_worse=metric.direction != "decrease"
                )
                if times
                else None
            )
            durations.append(seconds if seconds is not None else max(times or [0.0]))
            censored.append(seconds is None)
        summary = summarize_trials(durations, censored, deadline)
        found[metric.name] = asdict(summary)
    return found
