"""Time to recovery in one trial, and its summary across trials (Kaplan–Meier, censoring)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from ._series import as_floats, mean_variance

__all__ = [
    "TrialSummary",
    "outside_band",
    "outside_rate",
    "recovered_at",
    "recovery_time",
    "summarize_trials",
    "was_outside",
]

Data = Sequence[Any] | NDArray[Any]

_NOT_ZERO = 0.001
"""The least time to recovery of a metric that was out: 0.0 means it never left its band."""


def outside_band(
    values: Data,
    baseline: Data,
    *,
    alpha: float = 0.05,
    higher_is_worse: bool = True,
    scans: int | None = None,
    floor: float = 0.0,
    both_sides: bool = False,
) -> NDArray[np.float64]:
    """Per window: 1.0 outside the baseline's band on the harmful side (either side with
    ``both_sides``), 0.0 inside, NaN for a window without data.

    The band is the baseline's median plus a robust spread (scaled MAD), widened for the
    number of windows scanned (``scans``, default all of ``values``: Bonferroni) and for the
    baseline's own uncertainty (a t quantile on its effective size, autocorrelation counted),
    and never narrower than ``floor`` from the median (the smallest change that matters, e.g.
    the metric's margin: a short or very steady baseline sets no band tighter than that).
    """
    v = np.asarray(values, dtype=float)
    b, _ = as_floats(baseline, "baseline")
    if b.size < 3:
        raise ValueError("the baseline needs at least 3 values to set a band")
    centre = float(np.median(b))
    spread = float(stats.median_abs_deviation(b, scale="normal"))
    if spread == 0.0:
        spread = float(np.std(b, ddof=1)) or abs(centre) * 1e-3 or 1e-9
    _, n_eff = mean_variance(b)  # an autocorrelated baseline knows less than its length says
    z = float(stats.t(max(n_eff - 1.0, 10.0)).ppf(1 - alpha / max(1, scans or v.size)))
    limit = max(z * spread * math.sqrt(1 + 1 / n_eff), floor)
    worse = np.abs(v - centre) if both_sides else (v - centre) if higher_is_worse else (centre - v)
    with np.errstate(invalid="ignore"):
        flags = (worse > limit).astype(float)
    flags[np.isnan(v)] = math.nan
    return flags


def outside_rate(
    events: Data,
    totals: Data,
    baseline_events: Data,
    baseline_totals: Data,
    *,
    alpha: float = 0.05,
    scans: int | None = None,
    margin: float = 0.0,
) -> NDArray[np.float64]:
    """Per window of counted requests: 1.0 when its share of ``events`` (errors) is too high
    for the baseline's rate, 0.0 when not, NaN for a window without requests.

    Each window is tested against a binomial at the baseline's rate (with half an event
    added, so a clean baseline still allows a stray error), its spread widened by the
    baseline's own overdispersion (errors come in bursts), at ``alpha`` over ``scans``
    windows (Bonferroni); and its share must exceed the baseline's by more than ``margin``
    (the smallest increase that matters, e.g. the metric's margin in points).
    """
    k = np.asarray(events, dtype=float)
    n = np.asarray(totals, dtype=float)
    bk = np.asarray(baseline_events, dtype=float)
    bn = np.asarray(baseline_totals, dtype=float)
    if k.shape != n.shape or bk.shape != bn.shape:
        raise ValueError("events and totals differ in length")
    seen = bn > 0
    if int(seen.sum()) < 3:
        raise ValueError("the baseline needs at least 3 windows with requests to set a rate")
    rate = (float(bk.sum()) + 0.5) / (float(bn.sum()) + 1.0)
    shares = bk[seen] / bn[seen]
    binomial = rate * (1 - rate) / float(np.mean(bn[seen]))
    dispersion = max(1.0, float(np.var(shares, ddof=1)) / binomial) if binomial > 0 else 1.0
    # A window of n requests behaves like n / dispersion independent ones.
    n_eff = n / dispersion
    k_eff = k / dispersion
    threshold = alpha / max(1, scans or k.size)
    flags = np.full(k.shape, math.nan)
    some = n > 0
    # P(X >= k) for X ~ Binomial(n, rate), continuous in k and n: I_rate(k, n - k + 1).
    with np.errstate(invalid="ignore", divide="ignore"):
        tail = np.where(
            k_eff[some] > 0,
            special.betainc(np.maximum(k_eff[some], 1e-12), n_eff[some] - k_eff[some] + 1, rate),
            1.0,
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = k[some] / n[some] - float(bk.sum()) / max(float(bn.sum()), 1.0) > margin
    flags[some] = ((tail < threshold) & excess).astype(float)
    return flags


def recovered_at(
    times: Data,
    outside: Data,
    *,
    hold: int = 3,
    relapse: int = 2,
    outside_before: bool = False,
    step: float = 1.0,
) -> float | None:
    """When the metric was back for good, from per-window flags (1 outside the band, 0
    inside, NaN unknown) and each window's end (seconds since the revert).

    The metric is *out* during ``relapse`` or more known windows outside in a row (a single
    one is noise), and was out at the revert when ``outside_before``. It is back at the start
    of the first window inside after the last time it was out (the window before still had
    it out, so this bounds the truth within one ``step``), provided at least ``hold`` known
    windows follow from there: a short return to the band before a relapse never counts. A
    metric out at the revert and inside from the first window on was back within that window:
    its end, never 0.0. 0.0 when it was never out; None when it was not back for ``hold``
    windows by the last one (censored). Windows without data neither count towards ``hold``
    nor end a stretch.
    """
    t, _ = as_floats(times, "times")
    flags = np.asarray(outside, dtype=float)
    if t.size != flags.size:
        raise ValueError(f"times and flags differ in length ({t.size} and {flags.size})")
    if hold < 1 or relapse < 1:
        raise ValueError("hold and relapse must be at least 1")
    known = ~np.isnan(flags)
    kt, kf = t[known], flags[known] > 0.5
    last_out = _end_of_last_run(kf, relapse)  # index after the last run of `relapse` outside
    if last_out is None:
        if not outside_before:
            return 0.0
        last_out = 0
    inside = np.flatnonzero(~kf[last_out:])
    if not inside.size:
        return None
    first = last_out + int(inside[0])
    if kt.size - first < hold:
        return None
    return max(float(kt[first]) - step, step)


def _end_of_last_run(out: NDArray[np.bool_], length: int) -> int | None:
    """Index just after the last run of ``length`` or more True values."""
    end, run = None, 0
    for i, outside in enumerate(out):
        run = run + 1 if outside else 0
        if run >= length:
            end = i + 1
    return end


def recovery_time(
    times: Data,
    values: Data,
    baseline: Data,
    *,
    alpha: float = 0.05,
    hold: int = 3,
    relapse: int = 2,
    higher_is_worse: bool = True,
    window_lag: float = 0.0,
    before: Data = (),
) -> float | None:
    """Seconds from the revert until per-window ``values`` are back in the baseline band for
    good (:func:`outside_band`, then :func:`recovered_at`); 0.0 if they never left it; None if
    not back by the last window (censored).

    ``before`` holds the last windows before the revert: when the last ``relapse`` of them are
    outside the band, the metric was out at the revert and can never read 0.0. ``window_lag``
    (e.g. half a rolling window) is subtracted, since a rolling statistic trails the system.
    """
    t, _ = as_floats(times, "times")
    v = np.asarray(values, dtype=float)
    if t.size != v.size:
        raise ValueError(f"times and values differ in length ({t.size} and {v.size})")
    prior = np.asarray(before, dtype=float)
    flags = outside_band(
        np.concatenate([prior, v]), baseline, alpha=alpha, higher_is_worse=higher_is_worse
    )
    if t.size == 0:
        return None
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    found = recovered_at(
        t, flags[prior.size :], hold=hold, relapse=relapse,
        outside_before=was_outside(flags[: prior.size], relapse), step=step,
    )  # fmt: skip
    if found is None or found == 0.0:
        return found
    return max(found - window_lag, _NOT_ZERO)  # once out, never "never left"


def was_outside(flags: Data, relapse: int = 2) -> bool:
    """Were the last ``relapse`` known windows before the revert all outside the band?"""
    f = np.asarray(flags, dtype=float)
    known = f[~np.isnan(f)]
    return bool(known.size >= relapse and (known[-relapse:] > 0.5).all())


@dataclass(frozen=True)
class TrialSummary:
    """Time to recovery across trials."""

    median: float | None
    """Kaplan–Meier median; None if fewer than half the trials recovered."""
    low: float | None
    high: float | None
    """The median's confidence interval (log-log); None where the data cannot bound it."""
    recovered_within: float
    """Share of trials recovered within ``recover_within`` (censored ones count as not)."""
    durations: list[float]
    censored: list[bool]


def summarize_trials(
    durations: Data, censored: Sequence[bool], recover_within: float | None = None,
    *, confidence: float = 0.95,
) -> TrialSummary:  # fmt: skip
    """Median time to recovery with a Kaplan–Meier interval; never-recovered trials count
    as right-censored at their last observation, not dropped."""
    d, dropped = as_floats(durations, "durations")
    if dropped or len(censored) != d.size:
        raise ValueError("durations and censored must have the same length and no NaN")
    if d.size == 0:
        raise ValueError("no trials to summarize")
    if (d < 0).any():
        raise ValueError("durations must not be negative")
    flags = np.asarray(censored, dtype=bool)
    data = stats.CensoredData(uncensored=d[~flags], right=d[flags])
    if flags.all():
        median = low = high = None
    else:
        sf = stats.ecdf(data).sf
        with warnings.catch_warnings():
            # scipy warns where the log-log interval is undefined (S = 0 or 1); those points
            # are NaN and simply never bound the median.
            warnings.simplefilter("ignore", RuntimeWarning)
            ci = sf.confidence_interval(confidence_level=confidence, method="log-log")
        median = _first_below(sf.quantiles, sf.probabilities)
        low = _first_below(ci.low.quantiles, ci.low.probabilities)
        high = _first_below(ci.high.quantiles, ci.high.probabilities)
    within = 1.0 if recover_within is None else float(np.mean(~flags & (d <= recover_within)))
    return TrialSummary(median, low, high, within, d.tolist(), flags.tolist())


def _first_below(times: NDArray[Any], survival: NDArray[Any]) -> float | None:
    below = np.flatnonzero(np.nan_to_num(np.asarray(survival), nan=1.0) <= 0.5 + 1e-12)
    return float(times[below[0]]) if below.size else None
