"""Calibration of the statistics engine: false-alarm rates, powers and coverages over many
seeded simulations, and the time to judge 100 metrics of 10,000 samples each.

Run: python benchmarks/stats_calibration.py [RUNS]   (default 2000 per row; a few minutes)
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from stats.sim import latency

from chaoskit.stats import (
    ErrorRateMixture,
    LatencyMSPRT,
    Verdict,
    beyond_limit,
    compare,
    judge_experiment,
    outside_rate,
    recovered_at,
    recovery_time,
    shown_beyond_margin,
    summarize_trials,
)

TIMEOUT = 2.0
"""The load's timeout in the outage rows: a failed request counts at it."""


def share(runs: int, trial: Callable[[np.random.Generator], bool], seed: int) -> float:
    rng = np.random.default_rng(seed)
    return sum(trial(rng) for _ in range(runs)) / runs


def aa(phi: float, spikes: float) -> Callable[[np.random.Generator], bool]:
    def trial(rng: np.random.Generator) -> bool:
        c = latency(rng, 300, phi=phi, spikes=spikes)
        t = latency(rng, 300, phi=phi, spikes=spikes)
        return compare(c, t, kind="latency").verdict is Verdict.DEVIATED

    return trial


def naive_mw(rng: np.random.Generator) -> bool:
    c, t = latency(rng, 300, phi=0.9), latency(rng, 300, phi=0.9)
    return bool(stats.mannwhitneyu(c, t, alternative="less").pvalue < 0.05)


def verdict_is(
    ratio: float, n: int, want: Verdict, sigma: float = 0.5
) -> Callable[[np.random.Generator], bool]:
    def trial(rng: np.random.Generator) -> bool:
        c, t = latency(rng, n, sigma=sigma), latency(rng, n, ratio=ratio, sigma=sigma)
        return compare(c, t, kind="latency").verdict is want

    return trial


def holm_family(rng: np.random.Generator) -> bool:
    cc, ct = rng.normal(0, 0.35, 300), rng.normal(0, 0.35, 300)
    judged = {
        name: compare(np.exp(cc + rng.normal(0, 0.35, 300)), np.exp(ct + rng.normal(0, 0.35, 300)),
                      kind="latency")
        for name in ("a", "b", "c")
    }  # fmt: skip
    return judge_experiment(judged).verdict is Verdict.DEVIATED


def msprt_false(rng: np.random.Generator) -> bool:
    test = LatencyMSPRT(horizon=300, margin=1.0001)
    c, t = latency(rng, 300), latency(rng, 300)
    return any(test.update([a], [b]).verdict is Verdict.DEVIATED for a, b in zip(c, t, strict=True))


def msprt_coverage(rng: np.random.Generator) -> bool:
    test = LatencyMSPRT(horizon=1000)
    c, t = latency(rng, 1000), latency(rng, 1000, ratio=1.25)
    for i in range(0, 1000, 10):
        d = test.update(c[i : i + 10], t[i : i + 10])
        if d.n[0] >= 20 and not d.low <= math.log(1.25) <= d.high:
            return False
    return True


def mixture_false(rng: np.random.Generator) -> bool:
    test = ErrorRateMixture()
    return any(
        test.update(rng.random(20) < 0.05, rng.random(20) < 0.05).verdict is Verdict.DEVIATED
        for _ in range(100)
    )


def recovery_close(rng: np.random.Generator) -> bool:
    truth = float(rng.uniform(5, 60))
    times = np.arange(120.0)
    values = latency(rng, 120, phi=0.6, sigma=0.1) * np.where(times < truth, np.e, 1.0)
    found = recovery_time(times, np.log(values), np.log(latency(rng, 60, phi=0.6, sigma=0.1)))
    return found is not None and abs(found - truth) <= 10


def km_covers(rng: np.random.Generator) -> bool:
    durations, deadline = rng.exponential(20.0, 40), rng.uniform(8, 60, 40)
    s = summarize_trials(np.minimum(durations, deadline), (durations > deadline).tolist())
    low = s.low if s.low is not None else 0.0
    high = s.high if s.high is not None else math.inf
    return low <= 20 * math.log(2) <= high


def errors_a_a(rng: np.random.Generator) -> bool:
    """1 % errors in both windows: 3000 baseline and 1500 fault-phase requests (50/s for a
    minute and half a minute). With a handful of expected errors the test is conservative."""
    c, t = rng.random(3000) < 0.01, rng.random(1500) < 0.01
    return compare(c, t, kind="error_rate").verdict is Verdict.DEVIATED


def errors_false_held(rng: np.random.Generator) -> bool:
    """The control at 1 %, the fault phase exactly on the default margin (+0.5 points)."""
    c, t = rng.random(4000) < 0.01, rng.random(4000) < 0.015
    return compare(c, t, kind="error_rate", margin=0.005).verdict is Verdict.HELD


def outage(share: float) -> Callable[[np.random.Generator], bool]:
    """A healthy baseline (0.1 % errors), then ``share`` of requests failing."""

    def trial(rng: np.random.Generator) -> bool:
        c, t = rng.random(600) < 0.001, rng.random(300) < share
        return compare(c, t, kind="error_rate").verdict is Verdict.DEVIATED

    return trial


def block(rng: np.random.Generator) -> bool:
    """A fault shorter than its phase: a third of the fault phase's requests fail, in one
    block, after a healthy baseline (errors)."""
    cut = int(rng.integers(100, 200))
    treated = np.r_[np.zeros(int(rng.integers(0, 100)), bool), np.ones(cut, bool)]
    treated = np.r_[treated, rng.random(480 - treated.size) < 0.001]
    return compare(rng.random(600) < 0.001, treated, kind="error_rate").verdict is Verdict.DEVIATED


def timeouts(rng: np.random.Generator) -> bool:
    """Half the fault phase's requests time out and count at the timeout."""
    treated = np.where(rng.random(300) < 0.5, TIMEOUT, latency(rng, 300))
    judged = compare(latency(rng, 600), treated, kind="latency", ceiling=TIMEOUT)
    return judged.verdict is Verdict.DEVIATED


def broken_baseline(rng: np.random.Generator) -> bool:
    """A baseline at 30 % errors against a declared max of 1 %: caught before any fault."""
    return beyond_limit(rng.random(600) < 0.3, 0.01, side="above").broken


def healthy_baseline_refused(rng: np.random.Generator) -> bool:
    """A healthy baseline (0.5 % errors, max 1 %; AR(1) 0.9 latency with spikes) taken for
    not steady: by its limit, by "most requests failed", or by drift within it."""
    errors = rng.random(600) < 0.005
    if beyond_limit(errors, 0.01, side="above").broken:
        return True
    if beyond_limit(errors, 0.5, side="above").broken:
        return True
    lat = latency(rng, 600, phi=0.9, spikes=0.03)
    drift = compare(lat[:300], lat[300:], kind="latency", margin=1.1, alpha=0.001)
    return shown_beyond_margin(drift)


def bursty_baseline_refused(rng: np.random.Generator) -> bool:
    """A healthy baseline whose 2 % errors come in bursts of ten (a retry storm): taken as
    beyond its max of 5 % or as failing most requests."""
    starts = rng.random(600) < 0.002
    errors = np.convolve(starts, np.ones(10), mode="full")[:600] > 0
    return (
        beyond_limit(errors, 0.05, side="above").broken
        or beyond_limit(errors, 0.5, side="above").broken
    )


def limit_at_the_slo(rng: np.random.Generator) -> bool:
    """The fault phase exactly at its SLO (1 %): taken as broken."""
    return beyond_limit(rng.random(1500) < 0.01, 0.01, side="above").broken


def flapping_recovered_early(rng: np.random.Generator) -> bool:
    """Errors at 50 requests/s: out for 2 s, back 2 s, out 2 s, then healthy from 6 s on. Read
    as back before 6 s (the short return counted as recovery)?"""
    base_k = rng.binomial(50, 0.002, 30)
    bad = [1, 1, 0, 0, 1, 1] + [0] * 14
    k = np.where(np.array(bad) == 1, rng.binomial(50, 0.5, 20), rng.binomial(50, 0.002, 20))
    flags = outside_rate(k, [50] * 20, base_k, [50] * 30)
    found = recovered_at(np.arange(1.0, 21.0), flags, hold=3)
    return found is None or found < 6.0


def healthy_recovery_late(rng: np.random.Generator) -> bool:
    """A recovery phase with nothing wrong (0.2 % errors, as in the baseline): read as out at
    some point (a false relapse that would delay or deny recovery)?"""
    flags = outside_rate(rng.binomial(50, 0.002, 20), [50] * 20, rng.binomial(50, 0.002, 30),
                         [50] * 30)  # fmt: skip
    return recovered_at(np.arange(1.0, 21.0), flags, hold=3) != 0.0


ROWS: list[tuple[str, Callable[[np.random.Generator], bool], str]] = [
    ("A/A false DEVIATED, lognormal", aa(0.0, 0.0), "0.03-0.07"),
    ("A/A false DEVIATED, 3% 10x spikes", aa(0.0, 0.03), "0.03-0.07"),
    ("A/A false DEVIATED, AR(1) phi 0.5", aa(0.5, 0.0), "0.03-0.07"),
    ("A/A false DEVIATED, AR(1) phi 0.9", aa(0.9, 0.0), "0.03-0.07"),
    ("A/A false DEVIATED, AR(1) 0.9 + spikes", aa(0.9, 0.03), "0.03-0.07"),
    ("naive Mann-Whitney, AR(1) 0.9 (negative control)", naive_mw, "inflated"),
    ("false HELD, ratio on the 1.10 margin", verdict_is(1.10, 300, Verdict.HELD), "<= 0.065"),
    (
        "power HELD, ratio 1.0, n 500 (sigma 0.4)",
        verdict_is(1.0, 500, Verdict.HELD, 0.4),
        ">= 0.78",
    ),
    ("power DEVIATED, +20%, n 300", verdict_is(1.2, 300, Verdict.DEVIATED), ">= 0.95"),
    ("Holm, any false alarm over 3 correlated metrics", holm_family, "<= 0.055"),
    ("mSPRT false DEVIATED, a look per observation", msprt_false, "<= 0.05"),
    ("mSPRT confidence sequence covers at every look", msprt_coverage, ">= 0.95"),
    ("error mixture false DEVIATED, 100 looks", mixture_false, "<= 0.05"),
    ("recovery time within 10 s of the truth", recovery_close, ">= 0.95"),
    ("Kaplan-Meier median interval covers (~25% censored)", km_covers, "0.93-0.985"),
    ("A/A false DEVIATED, error rate 1%, n 3000/1500", errors_a_a, "0.03-0.07"),
    ("false HELD, error rate on the +0.5 point margin", errors_false_held, "<= 0.065"),
    ("total outage after a clean baseline: DEVIATED", outage(1.0), ">= 0.99"),
    ("partial outage (30% failing): DEVIATED", outage(0.3), ">= 0.99"),
    ("outage in one block (a third of the phase): DEVIATED", block, ">= 0.99"),
    ("outage of timeouts (half at the timeout): latency DEVIATED", timeouts, ">= 0.99"),
    ("broken baseline (30% errors, max 1%): not steady", broken_baseline, ">= 0.99"),
    ("healthy baseline taken for not steady", healthy_baseline_refused, "<= 0.01"),
    ("healthy bursty baseline (2% in bursts of ten) refused", bursty_baseline_refused, "<= 0.01"),
    ("fault phase exactly at its SLO taken as broken", limit_at_the_slo, "<= 0.05"),
    ("flapping recovery read as back too early", flapping_recovered_early, "<= 0.01"),
    ("healthy recovery read as out (false relapse)", healthy_recovery_late, "<= 0.02"),
]


def judging_time() -> float:
    rng = np.random.default_rng(0)
    metrics = [(latency(rng, 10_000), latency(rng, 10_000)) for _ in range(100)]
    start = time.perf_counter()
    for c, t in metrics:
        compare(c, t, kind="latency")
    return time.perf_counter() - start


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{'check':<52} {'runs':>5} {'rate':>7}  target")
    for i, (name, trial, target) in enumerate(ROWS):
        print(f"{name:<52} {runs:>5} {share(runs, trial, 1000 + i):>7.3f}  {target}", flush=True)
    times = [judging_time() for _ in range(3)]
    print(f"{'judge 100 metrics x 10,000 samples (median of 3)':<52} {'':>5} "
          f"{statistics.median(times):>6.3f}s  <= 1 s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
