"""Holm across correlated metrics, and the sequential tests under continuous monitoring."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chaoskit.stats import (
    ErrorRateMixture,
    LatencyMSPRT,
    Verdict,
    compare,
    holm,
    judge_experiment,
)

from .sim import latency


def test_holm_matches_the_textbook() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, 0.001]) == pytest.approx([0.2, 0.002])
    assert math.isnan(holm([0.01, float("nan")])[1])


def test_holm_keeps_the_family_wise_rate_across_correlated_metrics() -> None:
    rng = np.random.default_rng(21)
    false_alarms = 0
    runs = 1500
    for _ in range(runs):
        common_c, common_t = rng.normal(0, 0.35, 300), rng.normal(0, 0.35, 300)
        judged = {}
        for name in ("p50", "mean", "other"):  # three metrics sharing half their noise
            c = np.exp(np.log(0.05) + common_c + rng.normal(0, 0.35, 300))
            t = np.exp(np.log(0.05) + common_t + rng.normal(0, 0.35, 300))
            judged[name] = compare(c, t, kind="latency")
        false_alarms += judge_experiment(judged).verdict is Verdict.DEVIATED
    assert false_alarms / runs <= 0.055


def test_experiment_verdict_and_score() -> None:
    rng = np.random.default_rng(22)
    held = compare(latency(rng, 2000, sigma=0.3), latency(rng, 2000, sigma=0.3), kind="latency")
    slow = compare(latency(rng, 500), latency(rng, 500, ratio=1.5), kind="latency")
    assert held.verdict is Verdict.HELD and slow.verdict is Verdict.DEVIATED
    all_held = judge_experiment({"a": held, "b": held})
    assert (all_held.verdict, all_held.score, all_held.classification) == (
        Verdict.HELD,
        100.0,
        "pass",
    )
    mixed = judge_experiment({"a": held, "b": slow})
    assert mixed.verdict is Verdict.DEVIATED and mixed.deviated == ["b"] and mixed.score == 50.0
    assert judge_experiment({"a": held, "b": slow}, critical=["b"]).score == 0.0
    with pytest.raises(ValueError, match="critical metrics not among"):
        judge_experiment({"a": held}, critical=["x"])


def _monitor(test: object, pairs: list[tuple[object, object]]) -> tuple[Verdict | None, int]:
    for i, (c, t) in enumerate(pairs):
        decision = test.update(c, t)  # type: ignore[attr-defined]
        if decision.verdict is not None:
            return decision.verdict, i
    return None, len(pairs)


def test_msprt_false_positive_rate_with_a_look_after_every_observation() -> None:
    rng = np.random.default_rng(31)
    runs, horizon = 400, 400
    false = 0
    for _ in range(runs):
        c, t = latency(rng, horizon), latency(rng, horizon)
        test = LatencyMSPRT(horizon=horizon, margin=1.0001)  # a margin nobody can reach: no HELD
        verdict, _ = _monitor(test, [([a], [b]) for a, b in zip(c, t, strict=True)])
        false += verdict is Verdict.DEVIATED
    assert false / runs <= 0.05


def test_msprt_stops_early_for_real_effects_and_its_sequence_covers() -> None:
    rng = np.random.default_rng(32)
    stops, misses, horizon = [], 0, 1000
    for _ in range(200):
        c, t = latency(rng, horizon), latency(rng, horizon, ratio=1.25)
        test = LatencyMSPRT(horizon=horizon)
        stopped = horizon
        for i in range(0, horizon, 10):
            d = test.update(c[i : i + 10], t[i : i + 10])
            if d.n[0] >= 20 and not d.low <= math.log(1.25) <= d.high:
                misses += 1
                break
            if d.verdict is Verdict.DEVIATED and stopped == horizon:
                stopped = i + 10
        stops.append(stopped)
    assert np.median(stops) <= horizon / 3
    assert misses / 200 <= 0.05  # the confidence sequence held the truth at every look


def test_msprt_declares_held_only_inside_the_margin() -> None:
    rng = np.random.default_rng(33)
    test = LatencyMSPRT(horizon=4000, margin=1.10)
    decision = None
    for _ in range(40):
        decision = test.update(latency(rng, 100, sigma=0.3), latency(rng, 100, sigma=0.3))
        if decision.verdict is not None:
            break
    assert decision is not None and decision.verdict is Verdict.HELD
    assert decision.high < math.log(1.10)


def test_error_mixture_under_continuous_monitoring_and_with_a_real_increase() -> None:
    rng = np.random.default_rng(34)
    false = 0
    for _ in range(300):
        test = ErrorRateMixture()
        verdict, _ = _monitor(
            test, [(rng.random(20) < 0.05, rng.random(20) < 0.05) for _ in range(100)]
        )
        false += verdict is Verdict.DEVIATED
    assert false / 300 <= 0.05
    detected = []
    for _ in range(100):
        test = ErrorRateMixture()
        verdict, _ = _monitor(
            test, [(rng.random(20) < 0.02, rng.random(20) < 0.08) for _ in range(100)]
        )
        detected.append(verdict is Verdict.DEVIATED)
    assert np.mean(detected) >= 0.95


def test_error_rate_confidence_sequence_covers_the_true_ratio_at_every_look() -> None:
    rng = np.random.default_rng(35)
    misses, runs = 0, 300
    for _ in range(runs):
        test = ErrorRateMixture()
        for _ in range(50):
            d = test.update(rng.random(50) < 0.02, rng.random(50) < 0.04)  # true ratio 2
            if not d.low <= 2.0 <= d.high:
                misses += 1
                break
    assert misses / runs <= 0.05
    assert d.low > 1.0 or d.high < 4.0  # it narrows as errors accumulate
