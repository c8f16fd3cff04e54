"""Time to recovery against known truths, and the Kaplan–Meier summary's coverage."""

from __future__ import annotations

import numpy as np
import pytest

from chaoskit.stats import recovery_time, summarize_trials

from .sim import ar1


def _trial(
    rng: np.random.Generator, truth: float | None, seconds: int = 120
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-second log-latency medians: degraded by 1.0 until ``truth``, then back to normal."""
    baseline = ar1(rng, 60, 0.6, 0.1)
    times = np.arange(seconds, dtype=float)
    values = ar1(rng, seconds, 0.6, 0.1)
    degraded = times < truth if truth is not None else np.ones(seconds, bool)
    values = values + 1.0 * degraded
    return times, values, baseline


def test_recovery_within_ten_seconds_of_the_truth() -> None:
    rng = np.random.default_rng(41)
    errors = []
    for _ in range(500):
        truth = float(rng.uniform(5, 60))
        times, values, baseline = _trial(rng, truth)
        found = recovery_time(times, values, baseline)
        errors.append(np.inf if found is None else abs(found - truth))
    assert np.mean(np.array(errors) <= 10) >= 0.95


def test_no_fault_data_rarely_looks_like_a_recovery() -> None:
    rng = np.random.default_rng(42)
    false = 0
    for _ in range(500):
        times, values, baseline = _trial(rng, 0.0)
        false += recovery_time(times, values, baseline) != 0.0
    assert false / 500 <= 0.02


def test_never_recovering_is_always_censored() -> None:
    rng = np.random.default_rng(43)
    assert all(recovery_time(*_trial(rng, None)) is None for _ in range(200))


def test_recovery_time_inputs() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        recovery_time([0, 1], [1.0], [1, 2, 3])
    with pytest.raises(ValueError, match="at least 3"):
        recovery_time([0], [1.0], [1])
    assert recovery_time([], [], [1.0, 1.1, 0.9]) is None
    lagged = recovery_time(
        range(20), [5.0] * 5 + [1.0] * 15, [1.0, 1.02, 0.98, 1.01], window_lag=2.0
    )
    assert lagged == 2.0  # back in the window that starts at 4, less the 2 s lag


def test_kaplan_meier_median_interval_covers_with_censoring() -> None:
    rng = np.random.default_rng(44)
    truth = 20.0 * np.log(2)  # median of an exponential with mean 20 s
    covered, runs, censored_share = 0, 1000, []
    for _ in range(runs):
        durations = rng.exponential(20.0, 40)
        deadline = rng.uniform(8, 60, 40)  # random follow-up: about a quarter are censored
        censored = durations > deadline
        observed = np.minimum(durations, deadline)
        censored_share.append(censored.mean())
        s = summarize_trials(observed, censored.tolist(), recover_within=30.0)
        low = s.low if s.low is not None else 0.0
        high = s.high if s.high is not None else np.inf
        covered += low <= truth <= high
    assert 0.18 <= np.mean(censored_share) <= 0.32
    assert 0.93 <= covered / runs <= 0.985


def test_trial_summary_counts_censored_trials_as_not_recovered() -> None:
    s = summarize_trials([5.0, 8.0, 60.0, 12.0], [False, False, True, False], recover_within=10.0)
    assert s.recovered_within == 0.5
    assert s.median is not None and 8.0 <= s.median <= 12.0
    everything_censored = summarize_trials([60.0, 60.0], [True, True], recover_within=10.0)
    assert everything_censored.median is None and everything_censored.recovered_within == 0.0
    with pytest.raises(ValueError, match="same length"):
        summarize_trials([1.0], [True, False])
