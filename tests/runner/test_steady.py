"""The steady state is checked before any fault: a declared limit or abort threshold already
broken, most requests failing, or a metric getting worse within the baseline stops the run;
a healthy baseline does not. Real sample stores, filled as the load generator fills them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chaoskit.load import ErrorClass, RequestSamples
from chaoskit.model import Experiment
from chaoskit.runner.steady import check_steady


def experiment(**extra: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "name": "steady",
            "targets": {"web": {"kind": "proxy", "select": "web"}},
            "load": {"url": "http://127.0.0.1:1/", "rate": "50/s", "timeout": "1s"},
            "steady_state": [
                {"name": "p50", "of": "latency", "margin": "25%"},
                {"name": "errors", "of": "error_rate", "max": "5%"},
            ],
            "faults": [{"type": "latency", "target": "web", "latency": "10ms"}],
            **extra,
        }
    )


def baseline(failing: float = 0.0, slower_from: float | None = None) -> RequestSamples:
    """30 s at 50 requests/s: ``failing`` of them refused; from ``slower_from`` on, answers
    take four times as long."""
    rng = np.random.default_rng(5)
    samples = RequestSamples()
    for due in np.arange(0.0, 30.0, 0.02):
        row = samples.reserve(float(due), float(due))
        if rng.random() < failing:
            samples.finish(row, latency=0.001, error=ErrorClass.CONNECT)
            continue
        slow = 4.0 if slower_from is not None and due >= slower_from else 1.0
        samples.finish(row, latency=slow * float(rng.lognormal(np.log(0.01), 0.2)), status=200)
    return samples


def test_a_healthy_baseline_is_steady() -> None:
    assert check_steady(experiment(), baseline(0.001), {}, (0.0, 30.0), now=31.0).held


def test_a_declared_limit_already_broken_is_not_steady() -> None:
    check = check_steady(experiment(), baseline(0.2), {}, (0.0, 30.0), now=31.0)
    assert not check.held
    assert any("errors (max 5%)" in p for p in check.problems), check.problems


def test_an_abort_threshold_already_broken_is_not_steady() -> None:
    exp = experiment(
        steady_state=[{"name": "errors", "of": "error_rate"}],
        safety={"abort_when": [{"metric": "errors", "above": "10%", "for": "1s"}]},
    )
    check = check_steady(exp, baseline(0.3), {}, (0.0, 30.0), now=31.0)
    assert any("abort above 10%" in p for p in check.problems), check.problems


def test_a_system_failing_most_requests_is_not_up() -> None:
    exp = experiment(steady_state=[{"name": "p50", "of": "latency"}])
    check = check_steady(exp, baseline(0.8), {}, (0.0, 30.0), now=31.0)
    assert any("the system is not up" in p for p in check.problems), check.problems


@pytest.mark.parametrize("drift", [True, False])
def test_a_metric_getting_worse_within_the_baseline_is_not_steady(drift: bool) -> None:
    """Latency quadruples half-way: a queue that keeps growing. Between trials only the limits
    are checked (drift=False): a recovery window may well still be settling."""
    check = check_steady(
        experiment(), baseline(slower_from=15.0), {}, (0.0, 30.0), now=31.0, drift=drift
    )
    worse = [p for p in check.problems if "p50 got worse within the baseline" in p]
    assert bool(worse) is drift, check.problems


def test_requests_waiting_past_their_deadline_count_as_failed() -> None:
    """A hang in the baseline: every request from 10 s on is still waiting."""
    samples = RequestSamples()
    for due in np.arange(0.0, 30.0, 0.02):
        row = samples.reserve(float(due), float(due))
        if due < 10:
            samples.finish(row, latency=0.01, status=200)
    check = check_steady(experiment(), samples, {}, (0.0, 30.0), now=31.0)
    assert any("errors (max 5%)" in p for p in check.problems), check.problems
