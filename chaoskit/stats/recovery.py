"""Time to recovery in one trial, and its summary across trials (Kaplan–Meier, censoring)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from ._series import as_floats

__all__ = ["TrialSummary", "recovery_time", "summarize_trials"]

Data = Sequence[Any] | NDArray[Any]


def recovery_time(
    times: Data,
    values: Data,
    baseline: Data,
    *,
    alpha: float = 0.05,
    hold: int = 5,
    higher_is_worse: bool = True,
    window_lag: float = 0.0,
) -> float | None:
    """Seconds from the revert until ``values`` are back in the baseline band for good; 0.0
    if they never left it; None if not recovered by the last sample (censored).

    The band is the baseline's median plus a robust spread, widened for the number of windows
    scanned (Bonferroni) and the baseline's own uncertainty. Leaving the band counts only when
    it lasts ``hold`` windows in a row (one noisy window is not a relapse), and recovery needs
    ``hold`` windows inside after the last such stretch. ``window_lag`` (e.g. half a rolling
    window) is subtracted, since a rolling statistic trails the system.
    """
    t, _ = as_floats(times, "times")
    v = np.asarray(values, dtype=float)
    b, _ = as_floats(baseline, "baseline")
    if t.size != v.size:
        raise ValueError(f"times and values differ in length ({t.size} and {v.size})")
    if b.size < 3:
        raise ValueError("the baseline needs at least 3 values to set a band")
    if hold < 1:
        raise ValueError("hold must be at least 1")
    if t.size == 0:
        return None
    centre = float(np.median(b))
    spread = float(stats.median_abs_deviation(b, scale="normal"))
    if spread == 0.0:
        spread = float(np.std(b, ddof=1)) or abs(centre) * 1e-3 or 1e-9
    z = float(stats.norm.ppf(1 - alpha / max(1, t.size)))
    limit = z * spread * math.sqrt(1 + 1 / b.size)
    worse = (v - centre) if higher_is_worse else (centre - v)
    out = worse > limit  # NaN windows (no data) count as inside, not as a breach
    last_end = _end_of_last_breach(out, hold)
    if last_end is None:
        return 0.0
    if v.size - last_end < hold:
        return None
    return max(0.0, float(t[last_end]) - window_lag)


def _end_of_last_breach(out: NDArray[np.bool_], hold: int) -> int | None:
    """Index just after the last run of ``hold`` or more windows outside the band."""
    end, run = None, 0
    for i, outside in enumerate(out):
        run = run + 1 if outside else 0
        if run >= hold:
            end = i + 1
    return end


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
