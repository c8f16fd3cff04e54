"""Is a window clearly beyond a declared limit (an SLO's ``max``/``min``)? A one-sided test of
one window against a fixed number, for a share of requests or a mean of counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from numpy.typing import NDArray
from scipy import stats

from ._series import as_floats, mean_variance, small_sample_correction
from .compare import MIN_SAMPLES, NOISIER

__all__ = ["LimitCheck", "beyond_limit"]

Data = Sequence[Any] | NDArray[Any]


@dataclass(frozen=True)
class LimitCheck:
    """A window against a limit: ``broken`` only when the whole one-sided interval is beyond."""

    broken: bool
    estimate: float
    """The window's share (of flagged requests) or mean (of counts)."""
    bound: float
    """The one-sided (1 - alpha) bound nearest the limit: the window is at least this bad."""
    p_value: float
    """One-sided p-value against "within the limit" (small: clearly beyond)."""
    n: int
    limit: float
    side: str


def beyond_limit(
    values: Data,
    limit: float,
    *,
    side: Literal["above", "below"],
    alpha: float = 0.05,
    share: bool = True,
    reference: Data | None = None,
) -> LimitCheck:
    """Test whether ``values`` (time-ordered) lie beyond ``limit`` on ``side``.

    With ``share``, values are 0/1 flags (an error, a request slower than an SLO) and the
    statistic is their share, its variance floored by the binomial one with half a flag added
    (so a window of all flags or none stays honest); otherwise they are counts per second,
    floored by Poisson noise. Autocorrelation widens the interval as in :func:`compare`; with
    ``reference`` (the same flags or counts in the baseline), the window's values are taken to
    be as dependent on each other as the reference's were — the system's usual burstiness —
    so that a block of failures inside the window reads as the breach it is; without one, at
    most :data:`~chaoskit.stats.compare.NOISIER` times as noisy as independent values (a
    baseline that hangs half-way is as broken as one that fails throughout). Fewer than 10
    shares (3 counts) never count as broken.
    """
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5, got {alpha}")
    x, _ = as_floats(values, "values")
    if x.size < (MIN_SAMPLES if share else 3):
        mean = float(x.mean()) if x.size else math.nan
        return LimitCheck(False, mean, math.nan, math.nan, int(x.size), limit, side)
    mean = float(x.mean())
    variance, n_eff = mean_variance(x)
    if reference is not None:
        r, _ = as_floats(reference, "reference")
        if r.size >= 3:
            _, r_eff = mean_variance(r)
            n_eff = max(1.0, x.size * min(1.0, r_eff / r.size))
            variance = float(x.var()) / n_eff * small_sample_correction(n_eff)
    if share:
        p = (float(x.sum()) + 0.5) / (x.size + 1)
        floor = p * (1 - p) / x.size
    else:
        floor = max(mean, 1.0) / x.size
    if reference is None:  # no usual burstiness to go by: at most NOISIER times independent
        capped = NOISIER * max(float(x.var()) / x.size, floor)
        if variance > capped:
            variance, n_eff = capped, max(n_eff, x.size / NOISIER)
    variance = max(variance, floor)
    se = math.sqrt(variance)
    t = stats.t(max(n_eff - 1.0, 1.0))
    gap = (mean - limit) if side == "above" else (limit - mean)
    p_value = float(t.sf(gap / se))
    half = float(t.ppf(1 - alpha)) * se
    bound = mean - half if side == "above" else mean + half
    return LimitCheck(p_value < alpha, mean, bound, p_value, int(x.size), limit, side)
