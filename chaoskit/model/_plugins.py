"""Fault and probe types from plugins, joined to the built-in ones once ``chaoskit.model`` is
whole (so a plugin's own ``from chaoskit.model import FaultBase`` works while it loads).

The unions ``Fault`` and ``Probe`` (and ``FaultType``) are widened, the fields holding them
(``Experiment.faults``, ``ProbeMetric.probe``) retyped and their models rebuilt (pydantic's
way to change a field after the class is made); with no plugin installed nothing changes.
"""

from __future__ import annotations

import functools
import operator
from typing import Annotated, Any, Literal, cast

from pydantic import Field

from ..plugins import installed
from . import experiment, faults, metrics

__all__ = ["plug_in"]


def _union(models: tuple[type, ...]) -> Any:
    """The union of ``models``, chosen by ``type``, built at run time."""
    return cast(Any, Annotated)[functools.reduce(operator.or_, models), Field(discriminator="type")]


def plug_in() -> None:
    """Add every fit fault and probe type that installed plugins declare."""
    if not installed():
        return
    added_faults = tuple(m for _, m in faults.fault_plugins().good if isinstance(m, type))
    added_probes = tuple(m for _, m in metrics.probe_plugins().good if isinstance(m, type))
    if added_probes:
        models = metrics.BUILTIN_PROBES + added_probes
        metrics.PROBE_MODELS = models
        setattr(metrics, "Probe", _union(models))  # noqa: B010 - a type alias, widened at run time
        field = metrics.ProbeMetric.__pydantic_fields__["probe"]
        field.annotation = functools.reduce(operator.or_, models)  # the discriminator stays
        metrics.ProbeMetric.model_rebuild(force=True)
    if added_faults:
        faults.FAULT_MODELS = faults.BUILTIN_FAULTS + added_faults
        union = _union(faults.FAULT_MODELS)
        setattr(faults, "Fault", union)  # noqa: B010 - a type alias, widened at run time
        experiment.Experiment.__pydantic_fields__["faults"].annotation = list[union]  # type: ignore[valid-type]
        setattr(faults, "FaultType", cast(Any, Literal)[tuple(faults.fault_types())])  # noqa: B010
    if added_faults or added_probes:
        experiment.Experiment.model_rebuild(force=True)
