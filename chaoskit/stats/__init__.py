"""chaoskit's statistics: verdicts people can defend. Pure numpy/scipy; no I/O, nothing else
of chaoskit. Method: docs/statistics.md."""

from ._types import Effect, Judgement, Verdict
from .compare import DEFAULT_MARGINS, compare
from .experiment import ExperimentJudgement, holm, judge_experiment
from .recovery import TrialSummary, recovery_time, summarize_trials
from .sequential import ErrorRateMixture, LatencyMSPRT, SequentialDecision

__all__ = [
    "DEFAULT_MARGINS",
    "Effect",
    "ErrorRateMixture",
    "ExperimentJudgement",
    "Judgement",
    "LatencyMSPRT",
    "SequentialDecision",
    "TrialSummary",
    "Verdict",
    "compare",
    "holm",
    "judge_experiment",
    "recovery_time",
    "summarize_trials",
]
