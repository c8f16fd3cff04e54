"""The resilience gate: does a run stand up to the last good run of the same experiment? It
fails on a verdict that got worse (overall or for any metric) or a median time to recovery
beyond ``ratio`` times the good run's, and says which and by how much."""

from __future__ import annotations

from dataclasses import dataclass, field

from .history import RunRecord

__all__ = ["GateDecision", "compare_runs"]

_RANK = {"held": 0, "inconclusive": 1, "deviated": 2, "aborted": 3, "not_steady": 3, "error": 4}
"""Outcomes from best to worst."""


@dataclass(frozen=True)
class GateDecision:
    """Whether the run passes, and every reason it does not (empty when it passes)."""

    passed: bool
    against: RunRecord | None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compare_runs(run: RunRecord, good: RunRecord | None, ratio: float = 1.5) -> GateDecision:
    """Judge ``run`` against ``good`` (the last HELD run); with none, the run must hold itself."""
    if ratio < 1:
        raise ValueError(f"the time-to-recovery ratio must be at least 1, got {ratio}")
    if good is None:
        if run.outcome == "held":
            return GateDecision(True, None, notes=["no earlier good run: this one held"])
        return GateDecision(
            False,
            None,
            [f"the run is {run.outcome.upper()} and there is no earlier good run to allow it"],
        )
    reasons = []
    if _RANK.get(run.outcome, 4) > _RANK.get(good.outcome, 4):
        reasons.append(
            f"the verdict got worse: {run.outcome.upper()}, where run {good.run} was "
            f"{good.outcome.upper()}"
        )
    for metric, before in good.verdicts.items():
        now = run.verdicts.get(metric)
        if now is None:
            reasons.append(f"{metric} was judged in run {good.run} but not in this run")
        elif _RANK.get(now, 4) > _RANK.get(before, 4):
            reasons.append(f"{metric} got worse: {now.upper()}, was {before.upper()}")
    notes = []
    for metric, before_ttr in good.recovery.items():
        now_ttr = run.recovery.get(metric)
        if metric not in run.recovery:
            continue
        if now_ttr is None and before_ttr is not None:
            reasons.append(
                f"{metric} did not recover, where run {good.run} recovered in {before_ttr:.1f} s"
            )
        elif now_ttr is not None and before_ttr is not None:
            limit = max(before_ttr * ratio, before_ttr + 1.0)  # a second of slack near zero
            if now_ttr > limit:
                reasons.append(
                    f"{metric} took {now_ttr:.1f} s to recover, beyond {ratio:g}x the "
                    f"{before_ttr:.1f} s of run {good.run}"
                )
            else:
                notes.append(f"{metric} recovered in {now_ttr:.1f} s (was {before_ttr:.1f} s)")
    return GateDecision(not reasons, good, reasons, notes)
