"""The engine keeps its promises, shown by seeded simulation: false alarms at alpha on A/A data
(also heavy-tailed and autocorrelated), false HELD at most alpha on the margin, and power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from chaoskit.stats import Verdict, compare

from .sim import latency

RUNS = 2000


def rate(verdicts: list[Verdict], which: Verdict) -> float:
    return sum(v is which for v in verdicts) / len(verdicts)


@pytest.mark.parametrize(
    ("phi", "spikes"),
    [(0.0, 0.0), (0.0, 0.03), (0.5, 0.0), (0.9, 0.0), (0.9, 0.03)],
    ids=["lognormal", "heavy-tailed", "ar1-0.5", "ar1-0.9", "ar1-0.9-spikes"],
)
def test_a_a_false_deviated_rate_is_alpha(phi: float, spikes: float) -> None:
    rng = np.random.default_rng(20261122 + int(phi * 10) + int(spikes * 100))

    def window() -> np.ndarray:
        return latency(rng, 300, phi=phi, spikes=spikes)

    verdicts = [compare(window(), window(), kind="latency").verdict for _ in range(RUNS)]
    assert 0.03 <= rate(verdicts, Verdict.DEVIATED) <= 0.07


def test_negative_control_naive_mann_whitney_inflates() -> None:
    rng = np.random.default_rng(7)
    p = [
        stats.mannwhitneyu(latency(rng, 300, phi=0.9), latency(rng, 300, phi=0.9),
                           alternative="less").pvalue
        for _ in range(1000)
    ]  # fmt: skip
    assert np.mean(np.array(p) < 0.05) > 0.12


def test_false_held_on_the_margin_is_at_most_alpha() -> None:
    rng = np.random.default_rng(11)
    verdicts = [
        compare(latency(rng, 300), latency(rng, 300, ratio=1.10), kind="latency").verdict
        for _ in range(RUNS)
    ]
    assert rate(verdicts, Verdict.HELD) <= 0.065


def test_power_to_declare_held_when_nothing_changed() -> None:
    rng = np.random.default_rng(12)
    verdicts = [
        compare(latency(rng, 500, sigma=0.4), latency(rng, 500, sigma=0.4), kind="latency").verdict
        for _ in range(1000)
    ]
    assert rate(verdicts, Verdict.HELD) >= 0.78


def test_power_to_detect_twenty_percent_slower() -> None:
    rng = np.random.default_rng(13)
    verdicts = [
        compare(latency(rng, 300), latency(rng, 300, ratio=1.2), kind="latency").verdict
        for _ in range(1000)
    ]
    assert rate(verdicts, Verdict.DEVIATED) >= 0.95


def test_error_rate_a_a_and_power() -> None:
    rng = np.random.default_rng(14)
    same = [compare(rng.random(2000) < 0.02, rng.random(2000) < 0.02, kind="error_rate").verdict
            for _ in range(RUNS)]  # fmt: skip
    assert rate(same, Verdict.DEVIATED) <= 0.07
    worse = [compare(rng.random(2000) < 0.02, rng.random(2000) < 0.06, kind="error_rate").verdict
             for _ in range(500)]  # fmt: skip
    assert rate(worse, Verdict.DEVIATED) >= 0.95


def test_throughput_a_a_and_a_drop() -> None:
    rng = np.random.default_rng(15)
    # Two minutes at 100/s: enough to bound the ratio within 5 % (30 s is not).
    same = [compare(rng.poisson(100, 120), rng.poisson(100, 120), kind="throughput").verdict
            for _ in range(RUNS)]  # fmt: skip
    assert rate(same, Verdict.DEVIATED) <= 0.07
    assert rate(same, Verdict.HELD) >= 0.8
    drop = [compare(rng.poisson(100, 30), rng.poisson(80, 30), kind="throughput").verdict
            for _ in range(200)]  # fmt: skip
    assert rate(drop, Verdict.DEVIATED) >= 0.95


def test_tail_quantile_detects_a_slower_tail() -> None:
    rng = np.random.default_rng(16)
    verdicts = [
        compare(latency(rng, 2000), latency(rng, 2000, spikes=0.08), kind="latency",
                quantile=0.95).verdict
        for _ in range(200)
    ]  # fmt: skip
    assert rate(verdicts, Verdict.DEVIATED) >= 0.9


@pytest.mark.parametrize(
    ("control", "treatment", "kind", "reason"),
    [
        ([], [0.1] * 20, "latency", "too few samples"),
        ([0.1], [0.1] * 20, "latency", "too few samples"),
        ([0.1] * 20, [0.1] * 20, "latency", "constant latency"),
        ([float("nan")] * 30, [0.1, 0.2] * 15, "latency", "30 NaN value(s) dropped"),
        ([True] * 50, [False, True] * 25, "error_rate", "every request of the control failed"),
        ([0] * 10, [0] * 10, "throughput", "no requests at all in the control"),
    ],
)
def test_degenerate_inputs_are_inconclusive(control, treatment, kind, reason) -> None:  # type: ignore[no-untyped-def]
    judged = compare(control, treatment, kind=kind)
    assert judged.verdict is Verdict.INCONCLUSIVE and reason in judged.reason


@pytest.mark.parametrize(
    ("control", "kind", "match"),
    [
        ("abc", "latency", "sequence of numbers"),
        ([[0.1, 0.2]] * 20, "latency", "one-dimensional"),
        ([-0.1] * 20, "latency", "positive"),
        ([2] * 20, "error_rate", "outcomes"),
        ([0.1] * 20, "speed", "kind must be"),
    ],
)
def test_wrong_inputs_are_clear_errors(control, kind, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        compare(control, [0.1, 0.2] * 10, kind=kind)
