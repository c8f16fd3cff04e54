"""What the safety valve sees of a run: refusals and hangs as failures (a hang at its deadline),
a breach dated from its first bad request, and every request watched when there is no
concurrent control group. Real sample stores, filled as the load generator fills them."""

from __future__ import annotations

from typing import Any

import pytest

from chaoskit.load import ErrorClass, ProbeSeries, RequestSamples
from chaoskit.model import Experiment
from chaoskit.runner.watch import RunWatch
from chaoskit.safety.valve import Valve

OUTAGE = 110.0
"""When the system under test breaks, in every scenario here."""


def experiment(*conditions: dict[str, Any], timeout: str = "1s", **extra: Any) -> Experiment:
    return Experiment.model_validate(
        {
            "name": "watched",
            "targets": {"web": {"kind": "proxy", "select": "web"}},
            "load": {"url": "http://127.0.0.1:1/", "rate": "20/s", "timeout": timeout},
            "steady_state": [
                {"name": "errors", "of": "error_rate"},
                {"name": "p50", "of": "latency"},
                {"name": "rps", "of": "throughput"},
                {
                    "name": "up",
                    "of": "probe",
                    "interval": "500ms",
                    "probe": {"type": "command", "command": ["true"]},
                },
            ],
            "faults": [{"type": "latency", "target": "web", "latency": "10ms"}],
            "safety": {"abort_when": list(conditions)},
            **extra,
        }
    )


def traffic(
    until: float, *, failing: str = "refused", group: str | None = None, fallback: str | None = None
) -> RequestSamples:
    """20 requests/s from t=100 to ``until``: answered in 5 ms before the outage; after it,
    ``refused`` (a connection error at once) or ``hanging`` (never answered)."""
    samples = RequestSamples(fallback_group=fallback)
    due = 100.0
    while due < until:
        row = samples.reserve(due, due)
        if due < OUTAGE:
            samples.finish(row, latency=0.005, status=200, group=group)
        elif failing == "refused":
            samples.finish(row, latency=0.002, error=ErrorClass.CONNECT)
        due = round(due + 0.05, 6)
    return samples


def trip_time(exp: Experiment, samples: RequestSamples, start: float, end: float) -> float | None:
    """Check the valve every 0.1 s as the runner does; when it trips."""
    now = start
    clock = lambda: now  # noqa: E731
    valve = Valve(exp.safety, RunWatch(exp, samples, {}), clock=clock, started=start)
    while now < end:
        if valve.check() is not None:
            return now
        now = round(now + 0.1, 6)
    return None


def test_refusals_trip_the_valve_for_after_the_first_failure() -> None:
    exp = experiment({"metric": "errors", "above": "20%", "for": "2s"})
    tripped = trip_time(exp, traffic(130.0), 105.0, 130.0)
    assert tripped is not None and OUTAGE + 2.0 <= tripped <= OUTAGE + 2.1


def test_a_hang_fails_at_its_deadline_and_trips_as_fast() -> None:
    exp = experiment({"metric": "errors", "above": "20%", "for": "2s"})
    samples = traffic(130.0, failing="hanging")
    watch = RunWatch(exp, samples, {})
    [condition] = exp.safety.abort_when
    assert watch.read(condition, OUTAGE + 0.9).breached is False  # nothing overdue yet
    seen = watch.read(condition, OUTAGE + 1.3)
    assert seen.breached and seen.since == pytest.approx(OUTAGE + 1.0)  # the first deadline
    tripped = trip_time(exp, samples, 105.0, 130.0)
    assert tripped is not None and OUTAGE + 3.0 <= tripped <= OUTAGE + 3.1


def test_a_request_waiting_longer_than_a_latency_limit_is_already_slower() -> None:
    exp = experiment({"metric": "p50", "above": "300ms", "for": "1s"})
    samples = traffic(130.0, failing="hanging")
    [condition] = exp.safety.abort_when
    watch = RunWatch(exp, samples, {})
    assert not watch.read(condition, OUTAGE + 0.5).breached  # a third of the outcomes so far
    seen = watch.read(condition, OUTAGE + 0.7)  # most known outcomes are slower than 300 ms
    assert seen.breached and seen.since == pytest.approx(OUTAGE + 0.3)
    assert seen.value is not None and seen.value > 0.3  # what it shows agrees with the breach
    tripped = trip_time(exp, samples, 105.0, 130.0)
    assert tripped is not None and OUTAGE + 1.3 <= tripped <= OUTAGE + 1.4


def test_a_background_error_rate_below_the_limit_never_trips() -> None:
    exp = experiment({"metric": "errors", "above": "20%", "for": "2s"})
    samples = RequestSamples()
    for i in range(2000):  # 100 s at 20/s, one request in 20 failing
        row = samples.reserve(100 + i * 0.05, 0.0)
        failed = i % 20 == 7
        samples.finish(row, latency=0.005, status=0 if failed else 200,
                       error=ErrorClass.CONNECT if failed else ErrorClass.NONE)  # fmt: skip
    assert trip_time(exp, samples, 101.0, 199.0) is None


@pytest.mark.parametrize("group", ["experiment", "all"])
def test_without_a_concurrent_control_every_request_is_watched(group: str) -> None:
    exp = experiment({"metric": "errors", "above": "20%", "group": group})
    watch = RunWatch(exp, traffic(120.0), {})
    [condition] = exp.safety.abort_when
    assert watch.scope(condition) == "all requests"
    assert watch.read(condition, OUTAGE + 1.0).breached


def test_with_a_concurrent_control_unattributed_failures_count_against_the_experiment() -> None:
    exp = experiment(
        {"metric": "errors", "above": "20%"},
        {"metric": "errors", "above": "20%", "group": "control"},
        load={"url": "http://127.0.0.1:1/", "rate": "20/s", "timeout": "1s",
              "group_header": "X-Backend"},
        blast_radius={"count": 1, "control": "concurrent"},
    )  # fmt: skip
    samples = traffic(120.0, group="control", fallback="experiment")
    watch = RunWatch(exp, samples, {}, concurrent=True)
    experimental, control = exp.safety.abort_when
    assert watch.scope(experimental) == "the experiment group"
    assert watch.read(experimental, OUTAGE + 1.0).breached  # refusals carry no header
    assert not watch.read(control, OUTAGE + 1.0).breached


def test_throughput_is_not_judged_while_the_load_ramps_up() -> None:
    exp = experiment({"metric": "rps", "below": "10/s"})
    [condition] = exp.safety.abort_when
    watch = RunWatch(exp, traffic(130.0), {})
    assert watch.read(condition, 100.5).breached is None
    assert watch.read(condition, 108.0).breached is False
    assert watch.read(condition, OUTAGE + 2.5).breached is True


def test_a_failed_probe_reading_is_beyond_the_limit_and_a_breach_starts_at_its_first() -> None:
    exp = experiment({"metric": "up", "below": 1, "for": "1s"})
    [condition] = exp.safety.abort_when
    readings = ProbeSeries("up")
    watch = RunWatch(exp, RequestSamples(), {"up": readings})
    assert watch.read(condition, 100.0).breached is None  # never read yet: it cannot tell
    for at, value in [(100.0, 1.0), (100.5, 0.0), (101.0, None), (101.5, 0.0)]:
        if value is None:
            readings.add(at, at, None, "timed out")
        else:
            readings.add(at, at, value)
    seen = watch.read(condition, 101.6)
    assert seen.breached and seen.since == 100.5
    dead = ProbeSeries("up")
    for at in (100.0, 100.5, 101.0):  # the service is gone: every reading fails
        dead.add(at, at, None, "cannot connect")
    seen = RunWatch(exp, RequestSamples(), {"up": dead}).read(condition, 101.1)
    assert seen.breached and seen.since == 100.0 and seen.value is None


def test_a_burst_shorter_than_for_does_not_trip() -> None:
    """Half a second of refusals, then healthy again: the 1 s window stays above 20 % for
    another 0.8 s, but the breach lasted 0.5 s."""
    exp = experiment({"metric": "errors", "above": "20%", "for": "1s"})
    samples = RequestSamples()
    due = 100.0
    while due < 130.0:
        row = samples.reserve(due, due)
        if OUTAGE <= due < OUTAGE + 0.5:
            samples.finish(row, latency=0.002, error=ErrorClass.CONNECT)
        else:
            samples.finish(row, latency=0.005, status=200)
        due = round(due + 0.05, 6)
    assert trip_time(exp, samples, 105.0, 130.0) is None
    longer = experiment({"metric": "errors", "above": "20%", "for": "400ms"})
    tripped = trip_time(longer, samples, 105.0, 130.0)
    assert tripped is not None and tripped <= OUTAGE + 0.5  # a breach that did last 400 ms
