"""chaoskit's statistics: verdicts people can defend. Pure numpy/scipy; no I/O, nothing else
of chaoskit. Method: docs/statistics.md."""

from ._types import Effect, Judgement, Verdict
from .compare import DEFAULT_MARGINS, compare, default_error_margin, shown_beyond_margin
from .experiment import ExperimentJudgement, holm, judge_experiment
from .limits import LimitCheck, beyond_limit
from .recovery import (
    TrialSummary,
    outside_band,
    outside_rate,
    recovered_at,
    recovery_time,
    summarize_trials,
    was_outside,
)
from .sequential import ErrorRateMixture, LatencyMSPRT, SequentialDecision

__all__ = [
    "DEFAULT_MARGINS",
    "Effect",
    "ErrorRateMixture",
    "ExperimentJudgement",
    "Judgement",
    "LatencyMSPRT",
    "LimitCheck",
    "SequentialDecision",
    "TrialSummary",
    "Verdict",
    "beyond_limit",
    "compare",
    "default_error_margin",
    "holm",
    "judge_experiment",
    "outside_band",
    "outside_rate",
    "recovered_at",
    "recovery_time",
    "shown_beyond_margin",
    "summarize_trials",
    "was_outside",
]
