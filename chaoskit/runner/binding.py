"""The experiment bound to the live system, once, after bring-up: the placeholders of its
load URL and its probes (``${ports.NAME}``, ``${run.id}``, ``${run.dir}``) filled in.

Everything that talks to the system (the load generator, the probe samplers) reads the bound
experiment; the result keeps the experiment as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..drivers.engines import Engine
from ..model import Experiment
from ..model.metrics import ProbeMetric, ReplicasProbe
from ..model.variables import render
from .swarm import bound

__all__ = ["bind"]


def bind(
    experiment: Experiment,
    ports: dict[str, int],
    run: dict[str, str],
    engines: Sequence[Engine] = (),
) -> Experiment:
    """A copy of ``experiment`` whose load URL and probes name the live system's ports and
    this run (``run``: its ``id`` and ``dir``), and whose ``replicas`` probes read through
    their engine among ``engines`` (``ValueError`` if the probe names another)."""
    update: dict[str, Any] = {}
    if experiment.load is not None:
        url = render(experiment.load.url, ports, run)
        update["load"] = experiment.load.model_copy(update={"url": url})
    steady = []
    for metric in experiment.steady_state:
        if isinstance(metric, ProbeMetric):
            written = metric.probe.model_dump(mode="json")
            probe = type(metric.probe).model_validate(_rendered(written, ports, run))
            if isinstance(probe, ReplicasProbe):
                probe = bound(probe, engines)
            metric = metric.model_copy(update={"probe": probe})  # noqa: PLW2901
        steady.append(metric)
    update["steady_state"] = steady
    return experiment.model_copy(update=update)


def _rendered(value: Any, ports: dict[str, int], run: dict[str, str]) -> Any:
    """Every string in a plain JSON value with its run-time placeholders filled in."""
    if isinstance(value, str):
        return render(value, ports, run)
    if isinstance(value, list):
        return [_rendered(v, ports, run) for v in value]
    if isinstance(value, dict):
        return {k: _rendered(v, ports, run) for k, v in value.items()}
    return value
