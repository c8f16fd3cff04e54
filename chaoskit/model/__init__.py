"""The experiment schema: pydantic models for everything an experiment file can say."""

from .experiment import (
    BlastRadius,
    Experiment,
    ExperimentProblem,
    Hypothesis,
    InconsistentExperiment,
    Load,
    Margins,
    Phases,
)
from .faults import Fault, FaultBase
from .metrics import Metric, Probe
from .safety import AbortCondition, KillSwitch, Safety, Threshold
from .system import System, Target
from .variables import Variable

__all__ = [
    "AbortCondition",
    "BlastRadius",
    "Experiment",
    "ExperimentProblem",
    "Fault",
    "FaultBase",
    "Hypothesis",
    "InconsistentExperiment",
    "KillSwitch",
    "Load",
    "Margins",
    "Metric",
    "Phases",
    "Probe",
    "Safety",
    "System",
    "Target",
    "Threshold",
    "Variable",
]
