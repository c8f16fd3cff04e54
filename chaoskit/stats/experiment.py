"""Several metrics into one verdict: HELD only if every metric held (intersection–union),
DEVIATED if any deviated after Holm's correction (or a critical one deviated at all)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._types import Judgement, Verdict

__all__ = ["ExperimentJudgement", "holm", "judge_experiment"]

PASS_SCORE = 95.0
MARGINAL_SCORE = 75.0


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the order given (NaN stays NaN)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.size, math.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    running = 0.0
    for rank, index in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(p[index])))
        adjusted[index] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class ExperimentJudgement:
    """The overall verdict, a 0–100 score in Kayenta's manner, and why."""

    verdict: Verdict
    score: float
    classification: str
    """``pass`` (score >= 95), ``marginal`` (>= 75) or ``fail``."""
    deviated: list[str]
    adjusted_p: dict[str, float]
    reason: str


def judge_experiment(
    judgements: Mapping[str, Judgement],
    critical: Collection[str] = (),
    *,
    alpha: float = 0.05,
    decisive: Collection[str] = (),
) -> ExperimentJudgement:
    """Combine per-metric judgements; ``critical`` metrics fail the run if they deviate.

    A metric in ``decisive`` that is DEVIATED stays so without Holm's correction: its verdict
    came from a test outside the family of comparisons (e.g. a declared limit clearly broken).
    """
    if not judgements:
        return ExperimentJudgement(Verdict.INCONCLUSIVE, 0.0, "fail", [], {}, "no metrics")
    unknown = set(critical) - set(judgements)
    if unknown:
        raise ValueError(f"critical metrics not among the judgements: {sorted(unknown)}")
    names = list(judgements)
    adjusted = dict(zip(names, holm([judgements[n].p_deviation for n in names]), strict=True))
    deviated = []
    for name in names:
        j = judgements[name]
        if j.verdict is Verdict.HELD:
            continue
        if name in decisive and j.verdict is Verdict.DEVIATED:
            deviated.append(name)
            continue
        p = j.p_deviation if name in critical else adjusted[name]
        if not math.isnan(p) and p < alpha:
            deviated.append(name)
    held = [n for n in names if judgements[n].verdict is Verdict.HELD]
    critical_hit = [n for n in deviated if n in critical]
    score = 0.0 if critical_hit else 100.0 * len(held) / len(names)
    classification = (
        "pass" if score >= PASS_SCORE else "marginal" if score >= MARGINAL_SCORE else "fail"
    )
    if deviated:
        verdict = Verdict.DEVIATED
        which = ", ".join(deviated)
        reason = f"deviated: {which}" + (" (critical)" if critical_hit else "")
    elif len(held) == len(names):
        verdict, reason = Verdict.HELD, "every metric stayed inside its margin"
    else:
        verdict = Verdict.INCONCLUSIVE
        open_ = ", ".join(n for n in names if n not in held)
        reason = f"not shown either way: {open_}"
    return ExperimentJudgement(verdict, score, classification, deviated, adjusted, reason)
