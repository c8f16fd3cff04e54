"""Probe metrics are judged: with limits, by the share of readings outside them; without, by
the readings themselves as ratios — baseline against the fault phases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chaoskit.load import ProbeSeries, RequestSamples
from chaoskit.model import Experiment
from chaoskit.runner.verdict import Window, judge_run

BASELINE = (0.0, 60.0)
TRIALS = [Window(60.0, 120.0, 130.0)]


def experiment(**limits: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "name": "probes",
            "targets": {"p": {"kind": "proxy", "select": "p"}},
            "steady_state": [
                {
                    "name": "lag",
                    "of": "probe",
                    "probe": {"type": "command", "command": ["true"]},
                    **limits,
                }
            ],
            "faults": [{"type": "latency", "target": "p", "latency": "10ms"}],
        }
    )


def series(baseline: Any, fault: Any) -> ProbeSeries:
    """Two readings a second: the baseline's values, then the fault phase's."""
    readings = ProbeSeries("lag")
    for i, value in enumerate([*baseline, *fault]):
        at = i * 0.5
        if value is None:
            readings.add(at, at, None, "failed")
        else:
            readings.add(at, at, float(value))
    return readings


def judged(exp: Experiment, readings: ProbeSeries) -> dict[str, Any]:
    verdict = judge_run(exp, RequestSamples(), BASELINE, TRIALS, concurrent=False,
                        probes={"lag": readings})  # fmt: skip
    assert verdict["not_judged"] == {}
    [metric] = verdict["metrics"]
    assert metric["metric"] == "lag"
    return dict(metric)


def test_readings_outside_the_limits_in_the_fault_phase_deviate() -> None:
    rng = np.random.default_rng(1)
    calm = rng.uniform(0, 5, 120)
    stormy = np.where(rng.random(120) < 0.5, 50.0, 1.0)
    assert judged(experiment(max=10), series(calm, stormy))["verdict"] == "deviated"
    failed = [None if i % 3 == 0 else 1.0 for i in range(120)]  # a failed reading counts
    assert judged(experiment(min=1), series([1.0] * 120, failed))["verdict"] == "deviated"


def test_readings_inside_the_limits_hold_when_there_are_enough() -> None:
    readings = series([1.0] * 120, [1.0] * 120)
    assert judged(experiment(min=1, margin="10%"), readings)["verdict"] == "held"


def test_without_limits_the_readings_are_compared_as_ratios() -> None:
    rng = np.random.default_rng(2)
    base = rng.lognormal(np.log(10), 0.1, 120)
    assert judged(experiment(margin="20%"), series(base, base * 2))["verdict"] == "deviated"
    same = rng.lognormal(np.log(10), 0.1, 120)
    assert judged(experiment(margin="20%"), series(base, same))["verdict"] == "held"


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_readings_that_cannot_be_ratios_are_inconclusive_and_say_why(value: float) -> None:
    metric = judged(experiment(), series([value] * 120, [value] * 120))
    assert metric["verdict"] == "inconclusive"
    assert "give the probe metric 'min' or 'max' limits" in metric["reason"]


def test_hypothesis_margins_are_the_defaults_of_metrics_without_their_own() -> None:
    from chaoskit.runner.measure import margin_share

    exp = Experiment.model_validate(
        {
            "name": "margins",
            "targets": {"p": {"kind": "proxy", "select": "p"}},
            "load": {"url": "http://127.0.0.1:1/", "rate": "10/s"},
            "steady_state": [
                {"name": "p50", "of": "latency"},
                {"name": "p99", "of": "latency", "quantile": 0.99},
                {"name": "own", "of": "latency", "margin": "50%"},
                {"name": "errors", "of": "error_rate"},
                {"name": "rps", "of": "throughput"},
            ],
            "faults": [{"type": "latency", "target": "p", "latency": "10ms"}],
            "hypothesis": {
                "margins": {
                    "latency": "30%",
                    "latency_tail": "60%",
                    "error_rate": "2%",
                    "throughput": "20%",
                }
            },
        }
    )
    shares = {m.name: margin_share(m, exp.hypothesis.margins) for m in exp.steady_state}
    assert shares == pytest.approx({"p50": 0.3, "p99": 0.6, "own": 0.5, "errors": 0.02, "rps": 0.2})
