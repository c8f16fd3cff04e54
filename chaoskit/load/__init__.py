"""Load and probes: open-loop HTTP traffic at a fixed rate, and probes read on an interval.

Both produce timestamped samples in memory for the runner, the safety valve and the
statistics. Of chaoskit, only ``units`` and ``model`` are imported here.
"""

from ._errors import LoadConfigError, LoadWorkerError, ProbeConfigError, ProbeFailure
from ._generator import GroupOf, LoadGenerator, send_figures
from ._probes import ProbeReader, read_probe, reader_for
from ._samples import ErrorClass, RequestSamples, Samples
from ._sampling import ProbeSampler, ProbeSeries

__all__ = [
    "ErrorClass",
    "GroupOf",
    "LoadConfigError",
    "LoadGenerator",
    "LoadWorkerError",
    "ProbeConfigError",
    "ProbeFailure",
    "ProbeReader",
    "ProbeSampler",
    "ProbeSeries",
    "RequestSamples",
    "Samples",
    "read_probe",
    "reader_for",
    "send_figures",
]
