"""The verdict vocabulary: what a comparison found, with its numbers and a reason in words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Effect", "Judgement", "Verdict"]


class Verdict(StrEnum):
    """HELD: equivalence shown. DEVIATED: a real harmful change. INCONCLUSIVE: neither."""

    HELD = "held"
    DEVIATED = "deviated"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Effect:
    """The size of the change with its confidence interval (1 - 2·alpha, as TOST uses)."""

    estimate: float
    low: float
    high: float
    scale: str
    """``ratio`` (latency, throughput) or ``difference`` (error rate, absolute)."""


@dataclass(frozen=True)
class Judgement:
    """One metric's comparison of treatment against control."""

    verdict: Verdict
    p_deviation: float
    """One-sided p-value against "no harmful change" (small: the change is real)."""
    p_equivalence: float
    """p-value against "the change reaches the margin" (small: it stayed inside)."""
    effect: Effect | None
    margin: float
    """The margin used: a ratio for latency and throughput, a difference for error rate."""
    n: tuple[int, int]
    """Samples used (control, treatment), after dropping NaN."""
    reason: str
    kind: str = ""
    direction: str = "increase"
    n_effective: tuple[float, float] | None = None
    """Independent-equivalent sample sizes after autocorrelation."""
    basis: str = "margin"
    """What decided the verdict: ``margin`` (this comparison), or a caller's own test that
    overrode it (e.g. ``sequential``, ``limit``)."""
