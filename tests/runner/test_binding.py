"""The experiment bound to the live system once, after bring-up: its load URL and probes name
the ports and the run; the experiment as written (kept in the result) is left as it was."""

from __future__ import annotations

from chaoskit.model import Experiment
from chaoskit.model.metrics import ProbeMetric
from chaoskit.runner.binding import bind

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
