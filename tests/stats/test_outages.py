"""Outages are judged as what they are: a total, partial or timed-out outage after a healthy
baseline is DEVIATED; only a control that is itself broken leaves a metric INCONCLUSIVE; a
declared limit is tested on its own; recovery never reads 0.0 s for a metric out at the revert,
and a short return to the band before a relapse is not a recovery."""

from __future__ import annotations

import numpy as np
import pytest

from chaoskit.stats import (
    Verdict,
    beyond_limit,
    compare,
    outside_band,
    outside_rate,
    recovered_at,
    recovery_time,
    shown_beyond_margin,
)

from .sim import latency

TIMEOUT = 2.0


def test_a_total_outage_after_a_clean_baseline_is_deviated() -> None:
    rng = np.random.default_rng(1)
    clean = rng.random(600) < 0.001
    judged = compare(clean, np.ones(300, bool), kind="error_rate")
    assert judged.verdict is Verdict.DEVIATED
    assert judged.effect is not None and judged.effect.low > 0.9
    assert judged.effect.high <= 1.0  # a difference of shares never exceeds 1


def test_a_partial_outage_beyond_the_margin_is_deviated() -> None:
    rng = np.random.default_rng(2)
    judged = compare(rng.random(600) < 0.01, rng.random(300) < 0.3, kind="error_rate")
    assert judged.verdict is Verdict.DEVIATED


def test_throughput_falling_to_nothing_is_deviated() -> None:
    rng = np.random.default_rng(3)
    judged = compare(rng.poisson(50, 30), np.zeros(30), kind="throughput")
    assert judged.verdict is Verdict.DEVIATED


def test_only_a_broken_control_is_inconclusive() -> None:
    judged = compare(np.ones(300, bool), np.ones(300, bool), kind="error_rate")
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert "every request of the control failed" in judged.reason


def test_an_outage_of_timeouts_is_a_latency_deviation_not_a_broken_measurement() -> None:
    """Every request in the fault phase failed and counts at the 2 s timeout."""
    rng = np.random.default_rng(4)
    judged = compare(latency(rng, 300), np.full(300, TIMEOUT), kind="latency", ceiling=TIMEOUT)
    assert judged.verdict is Verdict.DEVIATED
    assert "300 of 300 requests failed and count at the 2s timeout" in judged.reason
    without = compare(latency(rng, 300), np.full(300, TIMEOUT), kind="latency")
    assert without.verdict is Verdict.INCONCLUSIVE  # the old reading: "constant latency"


@pytest.mark.parametrize("quantile", [None, 0.95])
def test_half_the_requests_timing_out_deviates_the_median_and_the_tail(
    quantile: float | None,
) -> None:
    rng = np.random.default_rng(5)
    treated = np.where(rng.random(2000) < 0.5, TIMEOUT, latency(rng, 2000))
    judged = compare(
        latency(rng, 2000), treated, kind="latency", ceiling=TIMEOUT, quantile=quantile
    )
    assert judged.verdict is Verdict.DEVIATED


def test_a_control_all_at_the_timeout_is_inconclusive() -> None:
    rng = np.random.default_rng(6)
    judged = compare(np.full(300, TIMEOUT), latency(rng, 300), kind="latency", ceiling=TIMEOUT)
    assert judged.verdict is Verdict.INCONCLUSIVE
    assert "every request of the control failed" in judged.reason


def test_shown_beyond_margin_needs_the_whole_interval_beyond() -> None:
    rng = np.random.default_rng(7)
    far = compare(latency(rng, 500), latency(rng, 500, ratio=3.0), kind="latency", alpha=0.001)
    assert shown_beyond_margin(far)
    near = compare(latency(rng, 500), latency(rng, 500, ratio=1.12), kind="latency")
    assert not shown_beyond_margin(near)
    drop = compare(rng.poisson(100, 30), rng.poisson(30, 30), kind="throughput", alpha=0.001)
    assert shown_beyond_margin(drop)


def test_a_limit_is_broken_only_when_the_data_show_it() -> None:
    rng = np.random.default_rng(8)
    outage = beyond_limit(np.ones(100, bool), 0.01, side="above")
    assert outage.broken and outage.estimate == 1.0 and outage.bound > 0.9
    at_the_slo = beyond_limit(rng.random(400) < 0.012, 0.01, side="above")
    assert not at_the_slo.broken  # 1.2 % on 400 requests is not clearly above 1 %
    floor = beyond_limit(rng.poisson(20, 30), 90, side="below", share=False)
    assert floor.broken
    assert not beyond_limit([True] * 5, 0.01, side="above").broken  # too few to tell


def test_a_limit_check_false_alarm_rate_is_at_most_alpha() -> None:
    rng = np.random.default_rng(9)
    runs = 2000
    false = sum(
        beyond_limit(rng.random(300) < 0.05, 0.05, side="above").broken for _ in range(runs)
    )
    assert false / runs <= 0.065


def test_a_metric_out_at_the_revert_never_reads_zero() -> None:
    baseline = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0]
    times = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert recovery_time(times, [1.0] * 6, baseline) == 0.0  # never left the band
    out = recovery_time(times, [1.0] * 6, baseline, before=[9.0, 9.0])
    assert out == 1.0  # out at the revert: back by the end of the first window


def test_a_short_return_before_a_relapse_is_not_a_recovery() -> None:
    """Flapping: back for 2 windows, out for 2, then back for good at 6 s (window ends 1..11)."""
    flags = [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    times = np.arange(1.0, len(flags) + 1)
    assert recovered_at(times, flags, hold=3) == 6.0
    assert recovered_at(times, flags, hold=3, relapse=3) == 0.0  # 2 windows out: noise now
    assert recovered_at(times, flags, hold=3, relapse=3, outside_before=True) == 2.0
    assert recovered_at(times[:8], [1, 1, 0, 0, 1, 1, 0, 0], hold=3) is None  # held too short
    assert recovered_at(times[:6], [0, 0, 1, 0, 0, 0], hold=3) == 0.0  # one window out: noise
    assert recovered_at(times[:4], [0, 0, 0, 0], outside_before=True) == 1.0


def test_windows_without_data_neither_break_nor_count_towards_the_hold() -> None:
    nan = float("nan")
    times = np.arange(1.0, 9.0)
    assert recovered_at(times, [1, 1, 0, nan, 0, nan, nan, nan], hold=3) is None
    assert recovered_at(times, [1, 1, 0, nan, 0, 0, nan, nan], hold=3) == 2.0


def test_error_windows_are_judged_by_the_baseline_rate() -> None:
    """A clean baseline at 50 requests/s: a stray error is noise, three are not."""
    baseline_events, baseline_totals = [0] * 20, [50] * 20
    flags = outside_rate([0, 1, 3, 50], [50] * 4, baseline_events, baseline_totals, scans=10)
    assert flags.tolist() == [0.0, 0.0, 1.0, 1.0]
    bursty = [0, 0, 5, 0, 0, 6, 0, 0, 4, 0] * 2  # a baseline that already has bursts
    flags = outside_rate([5, 40], [50, 50], bursty, [50] * 20, scans=10)
    assert flags.tolist() == [0.0, 1.0]
    assert np.isnan(outside_rate([0], [0], baseline_events, baseline_totals)[0])


def test_a_change_the_metric_margin_allows_is_not_out_of_the_band() -> None:
    """A 4 s, very steady baseline (per-second medians of 1.6 ms) and a 25 % wobble after the
    revert: outside so narrow a band, but well inside a 100 % margin."""
    steady, wobble = [1.58, 1.59, 1.58, 1.62], [1.54, 1.97, 2.07, 1.68]
    assert outside_band(wobble, steady).tolist() == [0.0, 1.0, 1.0, 1.0]
    assert outside_band(wobble, steady, floor=1.59 * 1.0).tolist() == [0.0] * 4
    assert outside_band([4.0], steady, floor=1.59).tolist() == [1.0]  # a real outage still is
    rate = outside_rate([10, 30], [50, 50], [1] * 10, [50] * 10, margin=0.3)
    assert rate.tolist() == [0.0, 1.0]  # 20 % is within 2 % + 30 points; 60 % is not


@pytest.mark.parametrize("kind", ["error_rate", "latency"])
def test_an_outage_covering_part_of_the_fault_phase_is_deviated(kind: str) -> None:
    """320 of 480 requests fail in one block (a fault shorter than its phase, a crash and a
    restart): the block is the effect, not a sign that errors come in bursts."""
    rng = np.random.default_rng(10)
    if kind == "error_rate":
        control, treated = rng.random(600) < 0.001, np.r_[np.ones(320, bool), np.zeros(160, bool)]
        judged = compare(control, treated, kind="error_rate")
    else:
        control = latency(rng, 600)
        treated = np.r_[np.full(320, TIMEOUT), latency(rng, 160)]
        judged = compare(control, treated, kind="latency", ceiling=TIMEOUT)
    assert judged.verdict is Verdict.DEVIATED, judged.reason
    assert judged.effect is not None and judged.effect.low > (0.5 if kind == "error_rate" else 5)


def test_a_block_of_failures_breaks_a_limit_with_or_without_a_baseline() -> None:
    """Against the baseline's burstiness (the fault phase), or at most four times as noisy as
    independent requests (the baseline itself): never read as harmless bursts."""
    block = np.r_[np.ones(320, bool), np.zeros(160, bool)]
    assert beyond_limit(block, 0.05, side="above").broken
    clean = np.zeros(600, bool)
    assert beyond_limit(block, 0.05, side="above", reference=clean).broken
    bursts = np.tile(np.r_[np.ones(3, bool), np.zeros(97, bool)], 5)  # 3 % in bursts of three
    assert not beyond_limit(bursts, 0.05, side="above").broken


def test_a_metric_harmful_both_ways_is_out_on_either_side() -> None:
    steady = [10.0, 10.2, 9.8, 10.1, 9.9, 10.0]
    assert outside_band([20.0, 2.0], steady).tolist() == [1.0, 0.0]
    assert outside_band([20.0, 2.0], steady, both_sides=True).tolist() == [1.0, 1.0]
