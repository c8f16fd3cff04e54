"""The experiment bound to the live system once, after bring-up: its load URL and probes name
the ports and the run; the experiment as written (kept in the result) is left as it was."""

from __future__ import annotations

import pytest

from chaoskit.drivers.engines import Engine
from chaoskit.load import ProbeConfigError, ProbeReader, reader_for
from chaoskit.model import Experiment, InconsistentExperiment
from chaoskit.model.metrics import ProbeMetric
from chaoskit.runner.binding import bind
from chaoskit.runner.swarm import BoundReplicasProbe

WRITTEN = {
    "version": 1,
    "name": "bound",
    "system": {"ports": ["web"]},
    "targets": {"web": {"kind": "proxy", "select": "web"}},
    "load": {"url": "http://127.0.0.1:${ports.web}/", "rate": "10/s"},
    "steady_state": [
        {"name": "p50", "of": "latency"},
        {
            "name": "up",
            "of": "probe",
            "min": 1,
            "probe": {"type": "command", "command": ["test", "-d", "${run.dir}"]},
        },
    ],
    "faults": [{"type": "latency", "target": "web", "latency": "1ms"}],
}


def test_the_load_and_the_probes_name_the_live_ports_and_the_run() -> None:
    experiment = Experiment.model_validate(WRITTEN)
    bound = bind(experiment, {"web": 8123}, {"id": "r1", "dir": "/tmp/r1"})
    assert bound.load is not None and bound.load.url == "http://127.0.0.1:8123/"
    probe = bound.steady_state[1]
    assert isinstance(probe, ProbeMetric)
    assert probe.probe.model_dump()["command"] == ["test", "-d", "/tmp/r1"]
    assert experiment.load is not None and experiment.load.url.endswith("${ports.web}/")
    written = experiment.steady_state[1]
    assert isinstance(written, ProbeMetric)
    assert written.probe.model_dump()["command"][2] == "${run.dir}"


def test_a_replicas_probe_reads_through_the_engine_it_names_and_only_once_bound() -> None:
    """A replicas probe is read through one of the experiment's engines: bound to it (by
    name, else the first), it has a reader; unbound, or naming an engine the run does not
    have, it is refused with what to do."""
    replicas = {"name": "missing", "of": "probe", "max": 0,
                "probe": {"type": "replicas", "service": "web", "engine": "two"}}  # fmt: skip
    engines = [Engine("one", "unix:///one.sock"), Engine("two", "unix:///two.sock")]
    written = {**WRITTEN, "steady_state": [replicas],
               "system": {"ports": ["web"], "engines": [
                   {"name": e.name, "host": e.host} for e in engines]}}  # fmt: skip
    experiment = Experiment.model_validate(written)
    [metric] = bind(experiment, {"web": 1}, {"id": "r", "dir": "/tmp"}, engines).steady_state
    assert isinstance(metric, ProbeMetric) and isinstance(metric.probe, BoundReplicasProbe)
    assert metric.probe._engine is engines[1]
    assert isinstance(reader_for(metric.probe), ProbeReader)
    with pytest.raises(ProbeConfigError, match="read through the engines of a run"):
        reader_for(experiment.steady_state[0].probe)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"engine 'two', which system.engines does not name"):
        bind(experiment, {"web": 1}, {"id": "r", "dir": "/tmp"}, engines[:1])
    unknown = {**replicas, "probe": {**replicas["probe"], "engine": "tow"}}  # type: ignore[dict-item]
    with pytest.raises(InconsistentExperiment, match="did you mean 'two'"):
        Experiment.model_validate({**written, "steady_state": [unknown]})
