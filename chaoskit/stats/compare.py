"""One metric, control against treatment: HELD only when equivalence is shown (TOST),
DEVIATED when a harmful change is real, INCONCLUSIVE with the reason otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from ._series import Floats, as_floats, mean_variance
from ._types import Effect, Judgement, Verdict

__all__ = ["DEFAULT_MARGINS", "compare", "default_error_margin", "shown_beyond_margin"]

Kind = Literal["latency", "error_rate", "throughput"]
Direction = Literal["increase", "decrease", "both"]
Data = Sequence[Any] | NDArray[Any]

DEFAULT_MARGINS = {"latency": 1.10, "latency_tail": 1.25, "throughput": 0.95}
"""Latency: ratio of medians/means 1.10, of p95/p99 1.25; throughput: ratio 0.95. Error rate:
an absolute increase of max(0.0005, half the control's rate)."""
MIN_SAMPLES = 10
HARMFUL = {"latency": "increase", "error_rate": "increase", "throughput": "decrease"}


def compare(
    control: Data,
    treatment: Data,
    *,
    kind: Kind,
    margin: float | None = None,
    alpha: float = 0.05,
    direction: Direction | None = None,
    quantile: float | None = None,
    ceiling: float | None = None,
) -> Judgement:
    """Judge ``treatment`` against ``control`` for one metric.

    - ``latency``: per-request seconds in time order; compared on log scale, so effects and
      margins are ratios (default 1.10, or 1.25 with ``quantile`` 0.95/0.99). ``ceiling`` (the
      load's timeout) marks failed requests, which the caller counts at that value: a window
      all at the ceiling is an outage, not a broken measurement.
    - ``error_rate``: per-request outcomes (True = error) in time order; margin an absolute
      increase (default max(0.0005, half the control's rate)).
    - ``throughput``: counts per second; margin the lowest acceptable ratio (default 0.95).

    ``direction`` is the harmful one (default: increase, increase, decrease).
    """
    if kind not in HARMFUL:
        raise ValueError(f"kind must be latency, error_rate or throughput, got {kind!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5, got {alpha}")
    harmful: Direction = direction or HARMFUL[kind]  # type: ignore[assignment]
    if harmful not in ("increase", "decrease", "both"):
        raise ValueError(f"direction must be increase, decrease or both, got {direction!r}")
    if quantile is not None and not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
    x, dropped_x = as_floats(control, "control")
    y, dropped_y = as_floats(treatment, "treatment")
    dropped = dropped_x + dropped_y
    note = f" ({dropped} NaN value(s) dropped)" if dropped else ""
    n = (int(x.size), int(y.size))
    if kind == "latency":
        tail = quantile is not None and quantile > 0.5
        chosen = (
            margin if margin is not None else DEFAULT_MARGINS["latency_tail" if tail else "latency"]
        )
        return _latency(x, y, _Case(kind, chosen, alpha, harmful, n, note), quantile, ceiling)
    if kind == "error_rate":
        chosen = margin if margin is not None else default_error_margin(x)
        return _error_rate(x, y, _Case(kind, chosen, alpha, harmful, n, note))
    chosen = margin if margin is not None else DEFAULT_MARGINS["throughput"]
    return _throughput(x, y, _Case(kind, chosen, alpha, harmful, n, note))


def default_error_margin(control: Data) -> float:
    """An error rate's default margin: an absolute increase of max(0.05 points, half the
    control's rate)."""
    outcomes = np.asarray(control, dtype=float)
    return max(0.0005, 0.5 * float(np.nanmean(outcomes))) if outcomes.size else 0.0005


@dataclass(frozen=True)
class _Case:
    """What every branch of a comparison shares: the kind, margin, alpha and sizes."""

    kind: str
    margin: float
    alpha: float
    direction: str
    n: tuple[int, int]
    note: str

    def inconclusive(self, reason: str) -> Judgement:
        return Judgement(
            Verdict.INCONCLUSIVE, math.nan, math.nan, None, self.margin, self.n,
            reason + self.note, self.kind, self.direction,
        )  # fmt: skip

    def decide(  # noqa: PLR0917 - one call site per kind, each naming the same seven
        self, diff: float, variance: float, df: float, bound: float,
        n_eff: tuple[float, float], to_effect: Callable[[float], float], scale: str,
        null: tuple[float, float] | None = None,
    ) -> Judgement:  # fmt: skip
        """TOST against ``bound`` (on the working scale) with ``variance`` and ``df``, and a
        one-sided test against 0 with ``null`` (variance, df) when given: the variance under
        "no change", for the deviation test only."""
        se = math.sqrt(variance)
        null_var, null_df = null if null is not None else (variance, df)
        se0 = math.sqrt(null_var)
        if se == 0.0 or se0 == 0.0:
            return self.inconclusive("no variation in either window: cannot judge")
        t, t0 = stats.t(df), stats.t(null_df)
        z = diff / se0
        if self.direction == "increase":
            p_dev = float(t0.sf(z))
            p_eq = float(t.cdf((diff - bound) / se))
        elif self.direction == "decrease":
            p_dev = float(t0.cdf(z))
            p_eq = float(t.sf((diff + bound) / se))
        else:
            p_dev = float(min(1.0, 2 * t0.sf(abs(z))))
            p_eq = float(max(t.cdf((diff - bound) / se), t.sf((diff + bound) / se)))
        held, deviated = p_eq < self.alpha, p_dev < self.alpha
        # The interval shown is the one that decided: under "no change" for a deviation.
        if deviated and not held:
            half = float(t0.ppf(1 - self.alpha)) * se0
        else:
            half = float(t.ppf(1 - self.alpha)) * se
        low, high = to_effect(diff - half), to_effect(diff + half)
        if scale == "difference":  # of two shares: never beyond ±1
            low, high = max(low, -1.0), min(high, 1.0)
        effect = Effect(to_effect(diff), low, high, scale)
        interval = f"{scale} {effect.estimate:.4g} [{effect.low:.4g}, {effect.high:.4g}]"
        if held:
            verdict, reason = Verdict.HELD, f"inside the margin {self.margin:.4g}: {interval}"
        elif deviated:
            verdict = Verdict.DEVIATED
            reason = (
                f"harmful change (p = {p_dev:.3g}) not shown to stay inside {self.margin:.4g}: "
                f"{interval}"
            )
        else:
            verdict = Verdict.INCONCLUSIVE
            reason = (
                f"interval wider than the margin {self.margin:.4g}: {interval}; more samples needed"
            )
        return Judgement(
            verdict, p_dev, p_eq, effect, self.margin, self.n, reason + self.note, self.kind,
            self.direction, n_eff,
        )  # fmt: skip


NOISIER = 4.0
"""How much noisier than the control a treatment window may look before its own estimate is
no longer believed by the deviation test: a variance ratio two windows of the same process
almost never reach (F(15, 15)'s 99th percentile is about 3.5, at the smallest effective sizes
these tests see), and a block of failures inside the window exceeds by orders of magnitude."""


def _under_no_change(
    control: float, treatment: float, sizes: tuple[int, int], floor: float = 0.0
) -> float:
    """The variance of the treatment's mean for the deviation test: its own, but at most
    :data:`NOISIER` times the control's long-run variance scaled to its size (and at least
    ``floor``). Under "no change" the treatment is as noisy as the control; a shift inside it
    (a block of failures after a clean baseline) is the effect, not a sign of bursty noise."""
    nx, ny = sizes
    return max(min(treatment, NOISIER * control * nx / max(ny, 1)), floor)


def _welch_df(vx: float, nx: float, vy: float, ny: float) -> float:
    denominator = vx**2 / max(nx - 1, 1) + vy**2 / max(ny - 1, 1)
    return (vx + vy) ** 2 / denominator if denominator > 0 else max(nx + ny - 2, 1)


def _latency(
    x: Floats, y: Floats, case: _Case, quantile: float | None, ceiling: float | None
) -> Judgement:
    if case.margin <= 1.0:
        raise ValueError(f"a latency margin is a ratio above 1 (e.g. 1.1), got {case.margin}")
    if min(case.n) < MIN_SAMPLES:
        return case.inconclusive(f"too few samples {case.n}; need {MIN_SAMPLES} per window")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("latencies must be positive seconds")
    if ceiling is not None:
        if (x >= ceiling).all():
            return case.inconclusive(
                "every request of the control failed: no steady state to compare against"
            )
        failed = int((y >= ceiling).sum())
        if failed:
            case = replace(
                case,
                note=f" ({failed} of {y.size} requests failed and count at the {ceiling:g}s "
                f"timeout){case.note}",
            )
    if np.ptp(x) == 0 or (np.ptp(y) == 0 and (ceiling is None or y[0] < ceiling)):
        return case.inconclusive("constant latency in a window: a broken measurement")
    lx, ly = np.log(x), np.log(y)
    bound = math.log(case.margin)
    if quantile is not None and quantile > 0.5:
        return _latency_quantile(lx, ly, quantile, case, bound)
    vx, ex = mean_variance(lx)
    vy, ey = mean_variance(ly)
    diff = float(ly.mean() - lx.mean())
    df = _welch_df(vx, ex, vy, ey)
    vy0 = _under_no_change(vx, vy, (lx.size, ly.size))
    null = (vx + vy0, _welch_df(vx, ex, vy0, ey))
    return case.decide(diff, vx + vy, df, bound, (ex, ey), math.exp, "ratio", null)


def _latency_quantile(lx: Floats, ly: Floats, q: float, case: _Case, bound: float) -> Judgement:
    """Quantiles per block of consecutive requests, then a t-test on the block quantiles."""
    tail_points = min(case.n) * (1 - q)
    if tail_points < 8:
        need = math.ceil(8 / (1 - q))
        return case.inconclusive(f"too few samples for the {q:g} quantile: need {need} per window")
    blocks = int(min(20, max(4, tail_points // 4)))
    bx = np.array([np.quantile(b, q) for b in np.array_split(lx, blocks)])
    by = np.array([np.quantile(b, q) for b in np.array_split(ly, blocks)])
    vx, vy = float(bx.var(ddof=1)) / blocks, float(by.var(ddof=1)) / blocks
    diff = float(by.mean() - bx.mean())
    df = _welch_df(vx, blocks, vy, blocks)
    return case.decide(diff, vx + vy, df, bound, (float(blocks),) * 2, math.exp, "ratio")


def _error_rate(x: Floats, y: Floats, case: _Case) -> Judgement:
    if not np.isin(x, (0.0, 1.0)).all() or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("error-rate windows hold outcomes: True/1 for an error, False/0 for none")
    if min(case.n) < MIN_SAMPLES:
        return case.inconclusive(f"too few requests {case.n}; need {MIN_SAMPLES} per window")
    if float(x.mean()) == 1.0:
        return case.inconclusive(
            "every request of the control failed: no steady state to compare against"
        )
    if not 0 < case.margin < 1:
        raise ValueError(f"an error-rate margin is a share between 0 and 1, got {case.margin}")
    vx, ex = mean_variance(x)
    vy, ey = mean_variance(y)
    # A binomial floor (with half an error added) keeps windows with no errors honest.
    vx, vy = max(vx, _binomial_variance(x)), max(vy, _binomial_variance(y))
    diff = float(y.mean() - x.mean())
    df = _welch_df(vx, ex, vy, ey)
    vy0 = _under_no_change(vx, vy, (x.size, y.size), _binomial_variance(y))
    null = (vx + vy0, _welch_df(vx, ex, vy0, ey))
    return case.decide(diff, vx + vy, df, case.margin, (ex, ey), float, "difference", null)


def _binomial_variance(x: Floats) -> float:
    p = (float(x.sum()) + 0.5) / (x.size + 1)
    return p * (1 - p) / x.size


def _throughput(x: Floats, y: Floats, case: _Case) -> Judgement:
    if not 0 < case.margin < 1:
        raise ValueError(f"a throughput margin is the lowest acceptable ratio, got {case.margin}")
    if min(case.n) < 3:
        return case.inconclusive(f"too few seconds {case.n}; need 3 per window")
    if (x < 0).any() or (y < 0).any():
        raise ValueError("throughput windows hold counts per second: no negative values")
    mx, my = float(x.mean()), float(y.mean())
    if mx == 0:
        return case.inconclusive("no requests at all in the control: no steady state")
    if my == 0:  # none at all in the treatment: as if half a request had got through
        my = 0.5 / y.size
    vx, ex = mean_variance(x)
    vy, ey = mean_variance(y)
    vx, vy = max(vx, mx / x.size), max(vy, my / y.size)  # at least Poisson noise
    lvx, lvy = vx / mx**2, vy / my**2  # delta method: the variance of each mean's log
    df = _welch_df(lvx, ex, lvy, ey)
    bound = -math.log(case.margin)
    lvy0 = _under_no_change(lvx, lvy, (x.size, y.size), 1.0 / (my * y.size))  # Poisson floor
    null = (lvx + lvy0, _welch_df(lvx, ex, lvy0, ey))
    return case.decide(math.log(my / mx), lvx + lvy, df, bound, (ex, ey), math.exp, "ratio", null)


def shown_beyond_margin(judgement: Judgement) -> bool:
    """Whether the change's whole interval lies beyond the margin on the harmful side: not only
    a real change, but one shown to be larger than the margin allows."""
    effect, margin = judgement.effect, judgement.margin
    if effect is None or not math.isfinite(margin):
        return False
    if effect.scale == "difference":
        up, down = margin, -margin
    else:
        up, down = (margin, 1 / margin) if margin > 1 else (1 / margin, margin)
    worse_up = effect.low > up
    worse_down = effect.high < down
    if judgement.direction == "increase":
        return worse_up
    if judgement.direction == "decrease":
        return worse_down
    return worse_up or worse_down
