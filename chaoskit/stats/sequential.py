"""Always-valid tests for stopping early: look after every batch at no cost to the error rate.

- :class:`LatencyMSPRT`: the mixture SPRT (Johari et al. 2017) on the difference of mean
  log-latencies, with its confidence sequence; HELD only when the whole sequence lies inside
  the margin.
- :class:`ErrorRateMixture`: a mixture of likelihood ratios over rate ratios 1.1…5 of errors
  landing in the experiment group against a concurrent control (Ville's inequality).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._series import as_floats
from ._types import Verdict

__all__ = ["ErrorRateMixture", "LatencyMSPRT", "SequentialDecision"]

Data = Sequence[Any] | NDArray[Any]


@dataclass(frozen=True)
class SequentialDecision:
    """Where the test stands after the latest batch."""

    verdict: Verdict | None
    """HELD or DEVIATED once decided; None while more data is needed."""
    p_value: float
    """Always-valid p-value (non-increasing over looks)."""
    low: float
    high: float
    """Confidence sequence: the log latency ratio (mSPRT) or the error rate ratio (mixture)."""
    n: tuple[int, int]


@dataclass
class _Moments:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, x: NDArray[Any]) -> None:
        self.n += int(x.size)
        self.total += float(x.sum())
        self.squares += float((x * x).sum())

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        return max((self.squares - self.n * self.mean**2) / max(self.n - 1, 1), 0.0)


@dataclass
class LatencyMSPRT:
    """mSPRT on log-latency; ``margin`` is the latency ratio inside which HELD may be declared.

    The mixing variance is τ² = 8.2·Var(Δ̂) at the planned ``horizon`` (samples per group),
    fixed from the first ``warmup`` samples (Howard et al. 2021 for α = 0.05).
    """

    alpha: float = 0.05
    margin: float = 1.10
    horizon: int = 1000
    warmup: int = 20
    _control: _Moments = field(default_factory=_Moments)
    _treatment: _Moments = field(default_factory=_Moments)
    _tau2: float | None = None
    _p: float = 1.0

    def update(self, control_batch: Data, treatment_batch: Data) -> SequentialDecision:
        """Add a batch of latencies (seconds) per group; the decision so far."""
        x, _ = as_floats(control_batch, "control_batch")
        y, _ = as_floats(treatment_batch, "treatment_batch")
        if (x <= 0).any() or (y <= 0).any():
            raise ValueError("latencies must be positive seconds")
        self._control.add(np.log(x))
        self._treatment.add(np.log(y))
        c, t = self._control, self._treatment
        n = (c.n, t.n)
        if min(n) < max(2, self.warmup):
            return SequentialDecision(None, self._p, -math.inf, math.inf, n)
        v = c.variance / c.n + t.variance / t.n
        if v <= 0:
            return SequentialDecision(None, self._p, -math.inf, math.inf, n)
        if self._tau2 is None:
            pooled = (c.variance + t.variance) / 2
            self._tau2 = 8.2 * pooled * 2 / self.horizon
        tau2 = self._tau2
        delta = t.mean - c.mean
        log_lr = 0.5 * math.log(v / (v + tau2)) + tau2 * delta**2 / (2 * v * (v + tau2))
        self._p = min(self._p, math.exp(-log_lr) if log_lr > 0 else 1.0)
        spread = 2 * math.log(1 / self.alpha) + math.log((v + tau2) / v)
        half = math.sqrt(v * (v + tau2) / tau2 * spread)
        low, high = delta - half, delta + half
        verdict = None
        if self._p <= self.alpha and delta > 0:
            verdict = Verdict.DEVIATED
        elif high < math.log(self.margin):
            verdict = Verdict.HELD
        return SequentialDecision(verdict, self._p, low, high, n)


RATIOS = tuple(float(r) for r in np.round(np.geomspace(1.1, 5.0, 12), 3))
GRID = tuple(float(r) for r in np.round(np.geomspace(0.1, 20.0, 61), 4))
"""Rate ratios the confidence sequence is read on."""


def _log_mean_exp(values: NDArray[np.float64]) -> float:
    top = float(values.max())
    return top + float(np.log(np.mean(np.exp(values - top))))


@dataclass
class ErrorRateMixture:
    """Are errors more frequent in the experiment group than in the concurrent control?

    Under "no difference", each error falls in the experiment group with probability q, its
    share of the requests. The mixture over rate ratios θ (1.1…5) of the likelihood ratios is a
    martingale under that hypothesis, so rejecting when it reaches 1/α is valid at every look.
    The confidence sequence for the ratio inverts the same construction at every ratio of a grid
    (each against the mixture of the others): the ratios not rejected so far.
    """

    alpha: float = 0.05
    ratios: tuple[float, ...] = RATIOS
    _log_lik: NDArray[np.float64] = field(init=False)
    _grid_log_lik: NDArray[np.float64] = field(init=False)
    _excluded: NDArray[np.bool_] = field(init=False)
    _requests: list[int] = field(default_factory=lambda: [0, 0])
    _p: float = 1.0

    def __post_init__(self) -> None:
        if any(r <= 1 for r in self.ratios):
            raise ValueError("rate ratios of the alternative must be above 1")
        self._log_lik = np.zeros(len(self.ratios))
        self._grid_log_lik = np.zeros(len(GRID))
        self._excluded = np.zeros(len(GRID), dtype=bool)

    def update(self, control_batch: Data, treatment_batch: Data) -> SequentialDecision:
        """Add a batch of outcomes (True = error) per group; the decision so far."""
        x, _ = as_floats(control_batch, "control_batch")
        y, _ = as_floats(treatment_batch, "treatment_batch")
        ec, et = int(x.sum()), int(y.sum())
        self._requests[0] += int(x.size)
        self._requests[1] += int(y.size)
        if x.size and y.size and ec + et:
            q = y.size / (x.size + y.size)
            self._log_lik += _batch_log_lr(np.asarray(self.ratios), q, et, ec)
            self._grid_log_lik += _batch_log_lr(np.asarray(GRID), q, et, ec)
        mixture = _log_mean_exp(self._log_lik)
        self._p = min(self._p, math.exp(-mixture) if mixture > 0 else 1.0)
        threshold = math.log(1 / self.alpha)
        # Each ratio against the mixture of all the others, for every ratio at once.
        ll = self._grid_log_lik
        top = float(ll.max())
        weights = np.exp(ll - top)
        rest = np.maximum(weights.sum() - weights, np.finfo(float).tiny) / (ll.size - 1)
        self._excluded |= np.log(rest) + top - ll >= threshold
        kept = np.flatnonzero(~self._excluded)
        low = GRID[kept[0]] if kept.size else math.nan
        high = GRID[kept[-1]] if kept.size else math.nan
        verdict = Verdict.DEVIATED if self._p <= self.alpha else None
        requests = (self._requests[0], self._requests[1])
        return SequentialDecision(verdict, self._p, low, high, requests)


def _batch_log_lr(theta: NDArray[np.float64], q: float, et: int, ec: int) -> NDArray[np.float64]:
    """Log-likelihood ratio, against θ = 1, of ``et`` of ``et + ec`` errors in the experiment
    group when it takes a share ``q`` of the requests and its rate is θ times the control's."""
    q1 = theta * q / (theta * q + (1 - q))
    result: NDArray[np.float64] = et * np.log(q1 / q) + ec * np.log((1 - q1) / (1 - q))
    return result
