"""A run's verdict: probe metrics judged by their readings; outages, declared limits and a
fault that spreads called DEVIATED; recovery that is too slow, absent or flapping making the
run DEVIATED although the fault itself was absorbed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chaoskit.load import ErrorClass, ProbeSeries, RequestSamples
from chaoskit.model import Experiment
from chaoskit.runner.verdict import Window, judge_run

BASELINE = (0.0, 60.0)
TRIALS = [Window(60.0, 120.0, 130.0)]


def judge(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``judge_run``'s judgement as result.json holds it."""
    return judge_run(*args, **kwargs).model_dump(mode="json")


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
    verdict = judge(exp, RequestSamples(), BASELINE, TRIALS, concurrent=False,
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


def web(*, recovery: str = "20s", errors: dict[str, Any] | None = None, **extra: Any) -> Experiment:
    """One web target at 50 requests/s: latency, errors with an SLO, recovery within 5 s."""
    return Experiment.model_validate(
        {
            "name": "outage",
            "targets": {"web": {"kind": "proxy", "select": "web"}},
            "load": {
                "url": "http://127.0.0.1:1/",
                "rate": "50/s",
                "timeout": "1s",
                "group_header": "X-Backend",
            },
            "steady_state": [
                {"name": "p50", "of": "latency", "margin": "50%"},
                {
                    "name": "errors",
                    "of": "error_rate",
                    **({"max": "5%"} if errors is None else errors),
                },
            ],
            "faults": [{"type": "partition", "target": "web"}],
            "phases": {"warmup": "0s", "baseline": "20s", "fault": "10s", "recovery": recovery},
            "hypothesis": {"recover_within": "5s"},
            **extra,
        }
    )


def requests(*spans: tuple[float, float, str], seed: int = 0) -> RequestSamples:
    """50 requests/s over each ``(start, end, how)``: ``ok`` (about 5 ms), ``refused``,
    ``hang`` (timed out at 1 s), ``errors`` (30 % answered 500)."""
    rng = np.random.default_rng(seed)
    samples = RequestSamples()
    for start, end, how in spans:
        for due in np.arange(start, end, 0.02):
            row = samples.reserve(float(due), float(due))
            fast = float(rng.lognormal(np.log(0.005), 0.3))
            if how == "refused":
                samples.finish(row, latency=0.001, error=ErrorClass.CONNECT)
            elif how == "hang":
                samples.finish(row, latency=1.0, error=ErrorClass.TIMEOUT)
            elif how == "errors" and rng.random() < 0.3:
                samples.finish(row, latency=fast, status=500, error=ErrorClass.HTTP_5XX)
            else:
                samples.finish(row, latency=fast, status=200)
    return samples


ONE = [Window(20.0, 30.0, 50.0)]


def metric(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in verdict["metrics"] if m["metric"] == name)


@pytest.mark.parametrize("how", ["refused", "hang"])
def test_a_total_outage_after_a_healthy_baseline_is_deviated(how: str) -> None:
    samples = requests((0, 20, "ok"), (20, 30, how), (30, 50, "ok"))
    verdict = judge(web(), samples, (0.0, 20.0), ONE, concurrent=False)
    assert verdict["verdict"] == "deviated"
    assert metric(verdict, "errors")["verdict"] == "deviated"
    assert metric(verdict, "p50")["verdict"] == "deviated"  # failures count at the timeout
    assert "500 of 500 requests failed" in metric(verdict, "p50")["reason"]
    recovered = verdict["recovery"]["errors"]["trials"][0]
    assert recovered["recovered"] and recovered["out_at_revert"] and recovered["seconds"] >= 1.0
    assert verdict["recovery_failures"] == []


def test_a_declared_limit_broken_in_the_fault_phase_is_a_deviation_whatever_the_margin() -> None:
    """30 % errors against a 5 % SLO, with a margin so wide that the comparison alone could
    never deviate."""
    exp = web(errors={"max": "5%", "margin": "90%"})
    samples = requests((0, 20, "ok"), (20, 30, "errors"), (30, 50, "ok"))
    verdict = judge(exp, samples, (0.0, 20.0), ONE, concurrent=False)
    errors = metric(verdict, "errors")
    assert errors["verdict"] == "deviated" and errors["basis"] == "limit"
    assert "broke its declared limit" in errors["reason"] and "max 5%" in errors["reason"]
    assert verdict["verdict"] == "deviated" and "errors" in verdict["deviated"]


@pytest.mark.parametrize(
    ("after", "why"),
    [
        ([(30, 50, "refused")], "was not back in its baseline band for good"),
        ([(30, 38, "refused"), (38, 50, "ok")], "took 8.0s to recover in trial 1"),
        (  # flapping: back for 2 s at a time before the real recovery at 40 s
            [
                (30, 32, "refused"),
                (32, 34, "ok"),
                (34, 36, "refused"),
                (36, 38, "ok"),
                (38, 40, "refused"),
                (40, 50, "ok"),
            ],
            "took 10.0s to recover",
        ),
    ],
)
def test_a_metric_not_back_within_recover_within_makes_the_run_deviated(
    after: list[tuple[float, float, str]], why: str
) -> None:
    """The fault itself was absorbed (the fault phase is healthy): only recovery fails."""
    samples = requests((0, 30, "ok"), *after)
    verdict = judge(web(), samples, (0.0, 20.0), ONE, concurrent=False)
    assert metric(verdict, "errors")["verdict"] == "held"
    assert verdict["verdict"] == "deviated"
    assert verdict["classification"] == "fail"
    assert verdict["score"] == 0.0  # both held, neither was back in time (refusals: p50 too)
    assert "not recovered in time: " in verdict["reason"]
    failures = [f for f in verdict["recovery_failures"] if f["metric"] == "errors"]
    assert failures and failures[0]["trial"] == 1 and why in failures[0]["reason"]


def test_a_healthy_recovery_counts_as_recovered_at_once() -> None:
    samples = requests((0, 50, "ok"))
    verdict = judge(web(), samples, (0.0, 20.0), ONE, concurrent=False)
    assert verdict["verdict"] == "held"
    [trial] = verdict["recovery"]["errors"]["trials"]
    assert trial["seconds"] == 0.0 and trial["recovered"] and not trial["out_at_revert"]


def test_without_recover_within_the_recovery_phase_is_the_deadline() -> None:
    exp = web(hypothesis={})
    samples = requests((0, 30, "ok"), (30, 50, "refused"))
    verdict = judge(exp, samples, (0.0, 20.0), ONE, concurrent=False)
    assert verdict["verdict"] == "deviated"
    assert verdict["recovery"]["errors"]["deadline"] == 20.0


def concurrent_requests(experiment_how: str, control_how: str) -> RequestSamples:
    """Two backends behind one URL, alternating; a request is tagged by the backend that
    answered, and one with no answer falls back to the experiment group."""
    rng = np.random.default_rng(3)
    samples = RequestSamples(fallback_group="experiment")
    for i, due in enumerate(np.arange(0, 50, 0.02)):
        row = samples.reserve(float(due), float(due))
        group = "experiment" if i % 2 else "control"
        how = (experiment_how if group == "experiment" else control_how) if 20 <= due < 30 else ""
        fast = float(rng.lognormal(np.log(0.005), 0.3))
        if how == "refused":
            samples.finish(row, latency=0.001, error=ErrorClass.CONNECT)  # no header
        elif how == "errors" and rng.random() < 0.5:
            samples.finish(row, latency=fast, status=500, error=ErrorClass.HTTP_5XX, group=group)
        else:
            samples.finish(row, latency=fast, status=200, group=group)
    return samples


def test_concurrent_failures_without_an_answer_count_against_the_experiment() -> None:
    exp = web(blast_radius={"count": 1, "control": "concurrent"})
    verdict = judge(exp, concurrent_requests("refused", ""), (0.0, 20.0), ONE, concurrent=True)
    errors = metric(verdict, "errors")
    assert errors["verdict"] == "deviated" and errors["n"][1] == 250


def test_a_fault_that_reaches_the_control_group_is_a_deviation() -> None:
    """Both groups at 50 % errors: the comparison between them sees nothing, the control's own
    fall from its baseline is what shows the fault spread."""
    exp = web(errors={}, blast_radius={"count": 1, "control": "concurrent"})
    samples = concurrent_requests("errors", "errors")
    verdict = judge(exp, samples, (0.0, 20.0), ONE, concurrent=True)
    errors = metric(verdict, "errors")
    assert errors["verdict"] == "deviated" and errors["basis"] == "spread"
    assert "the fault reached beyond the targets hit" in errors["reason"]


def test_a_probe_that_fails_in_the_fault_phase_deviates_even_without_limits() -> None:
    readings = series(np.full(120, 10.0), [None] * 120)  # the service is gone: no reading
    metric = judged(experiment(margin="20%"), readings)
    assert metric["verdict"] == "deviated" and metric["basis"] == "probe failures"


def test_a_run_stopped_because_the_system_was_not_back_is_deviated() -> None:
    samples = requests((0, 50, "ok"))
    why = "trial 2 was not run: the system was not back in its steady state"
    verdict = judge(web(), samples, (0.0, 20.0), ONE, concurrent=False, stopped=why)
    assert verdict["verdict"] == "deviated" and verdict["stopped_early"] == why
    assert why in verdict["reason"]


def test_recovery_is_measured_from_the_last_revert_of_the_trial() -> None:
    """A 2 s fault in a 10 s phase, then failures for 3 s after its revert at 22 s: measured
    from the revert, the metric was out and took 3 s — not 'never left' at the phase's end."""
    samples = requests((0, 20, "ok"), (20, 25, "refused"), (25, 50, "ok"))
    trial = [Window(20.0, 30.0, 50.0, reverted=22.0)]
    verdict = judge(web(), samples, (0.0, 20.0), trial, concurrent=False)
    [recovered] = verdict["recovery"]["errors"]["trials"]
    assert recovered["from"] == 22.0 and recovered["out_at_revert"]
    assert recovered["seconds"] == 3.0 and recovered["recovered"]


def test_a_throughput_floor_is_judged_on_the_whole_service() -> None:
    """Two backends, one hit: the experiment group carries half the answers; a floor of 40/s
    on a healthy 50/s service holds."""
    exp = web(
        errors={},
        blast_radius={"count": 1, "control": "concurrent"},
        steady_state=[{"name": "rps", "of": "throughput", "min": "40/s", "direction": "both"}],
    )
    verdict = judge(exp, concurrent_requests("", ""), (0.0, 20.0), ONE, concurrent=True)
    assert metric(verdict, "rps")["basis"] != "limit"


@pytest.mark.parametrize("direction", ["decrease", "both"])
def test_a_latency_harmful_when_it_falls_is_judged_not_a_crash(direction: str) -> None:
    """Latency (or a probe without limits) with direction decrease: a margin the statistics
    take, not exit 70 before the first fault."""
    rng = np.random.default_rng(4)
    exp = web(steady_state=[{"name": "fast", "of": "latency", "direction": direction}])
    verdict = judge(exp, requests((0, 50, "ok")), (0.0, 20.0), ONE, concurrent=False)
    assert metric(verdict, "fast")["verdict"] in ("held", "inconclusive")
    base = rng.lognormal(np.log(10), 0.1, 120)
    falling = judged(experiment(margin="20%", direction=direction), series(base, base / 3))
    assert falling["verdict"] == "deviated"


def test_a_probe_that_failed_says_why_it_is_inconclusive() -> None:
    readings = ProbeSeries("lag")
    for i in range(240):
        readings.add(i * 0.5, i * 0.5, None, f"parse error: unclosed left parenthesis ({i})")
    metric = judged(experiment(), readings)
    assert metric["verdict"] == "inconclusive"
    assert metric["reason"].endswith(
        "; the probe failed 240 of 240 readings; last: parse error: unclosed left parenthesis (239)"
    ), metric["reason"]


def test_cautions_name_each_failing_probe_and_a_stalled_runner() -> None:
    from chaoskit.model.result import RESULT_SCHEMA, RunResult
    from chaoskit.report.words import cautions

    def result(**parts: Any) -> RunResult:
        record = {"schema": RESULT_SCHEMA, "run": "r", "experiment": {"name": "x"},
                  "outcome": "held", "exit_code": 0}  # fmt: skip
        return RunResult.from_json({**record, **parts})

    said = cautions(
        result(
            probes={
                "lag": {"error": [None, "no series", None, "timed out"]},
                "fine": {"error": [None, None]},
            },
            event_loop={"worst_lag": 0.25, "stalls": 2, "stalled": 0.4, "distorting": 0.1},
        )
    )
    assert said[0].startswith("the runner itself stalled for up to 250 ms (2 stall(s)")
    assert said[1] == "probe 'lag' failed 2 of 4 readings; last: timed out"
    assert len(said) == 2
    assert cautions(result(event_loop={"worst_lag": 0.05, "distorting": 0.1})) == []


def test_a_caution_says_when_the_load_generator_fell_behind_its_schedule() -> None:
    from chaoskit.model.result import RESULT_SCHEMA, RunResult
    from chaoskit.report.words import cautions

    def result(**load: Any) -> RunResult:
        return RunResult.from_json({"schema": RESULT_SCHEMA, "run": "r", "experiment": {},
                                    "outcome": "held", "exit_code": 0, "load": load})  # fmt: skip

    [said] = cautions(result(workers=1, send_lag_p99=0.025, send_lag_p50=0.0001))
    assert said.startswith("the load generator sent 1 % of its requests 25 ms or more after")
    assert "load.workers" in said
    assert cautions(result(workers=1, send_lag_p99=0.002)) == []
    assert cautions(result(workers=1, send_lag_p99=None)) == []
