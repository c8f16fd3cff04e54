"""The experiment schema: pydantic models for everything an experiment file can say."""

from typing import TYPE_CHECKING

from ._base import Model
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
from .faults import FaultBase
from .metrics import Metric
from .safety import AbortCondition, KillSwitch, Safety, Threshold
from .system import System, TargetSpec
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
    "Model",
    "Phases",
    "Probe",
    "Safety",
    "System",
    "TargetSpec",
    "Threshold",
    "Variable",
]

from . import _plugins, faults, metrics

_plugins.plug_in()
if TYPE_CHECKING:
    from .faults import Fault
    from .metrics import Probe
else:  # as widened by plugins, if any
    Fault = faults.Fault
    Probe = metrics.Probe
