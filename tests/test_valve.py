"""The safety valve's decisions: persistence with ``for:``, units, time limit, kill file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaoskit.model.safety import AbortCondition, Safety
from chaoskit.safety.valve import Reading, Valve, threshold_value
from chaoskit.units import Duration, Percent, Rate


class Clock:
    """A clock the test moves by hand (the valve takes its clock as an argument)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Readings:
    """What each metric reads now, set by the test: a value (breached when beyond the limit),
    None for "the data cannot tell", or a full :class:`Reading`."""

    def __init__(self, values: dict[str, float | Reading | None]) -> None:
        self.values = values
        self.asked: list[tuple[str, str]] = []

    def scope(self, condition: AbortCondition) -> str:
        return f"watching {condition.group}"

    def read(self, condition: AbortCondition, now: float) -> Reading:
        self.asked.append((condition.metric, condition.group))
        value = self.values.get(condition.metric)
        if isinstance(value, Reading):
            return value
        if value is None:
            return Reading(None, None)
        limit = threshold_value(condition.limit)
        return Reading(value, value > limit if condition.above is not None else value < limit)


def valve(
    spec: dict[str, object], values: dict[str, float | Reading | None], **kw: object
) -> tuple[Valve, Clock]:
    clock = Clock()
    return Valve(Safety.model_validate(spec), Readings(values), clock=clock, **kw), clock  # type: ignore[arg-type]


def test_thresholds_in_base_units() -> None:
    assert threshold_value(Duration.parse("250ms")) == 0.25
    assert threshold_value(Percent.parse("20%")) == 0.2
    assert threshold_value(Rate.parse("6000/min")) == 100
    assert threshold_value(3.5) == 3.5


def test_a_breach_must_last_for_its_persistence() -> None:
    values: dict[str, float | Reading | None] = {"errors": 0.05}
    v, clock = valve({"abort_when": [{"metric": "errors", "above": "20%", "for": "2s"}]}, values)
    assert v.check() is None
    values["errors"] = 0.5
    assert v.check() is None  # breached now, but not for 2 s yet
    clock.now += 1.5
    assert v.check() is None
    values["errors"] = 0.1  # the breach ends: the timer restarts
    clock.now += 0.1
    assert v.check() is None
    values["errors"] = 0.5
    clock.now += 0.1
    assert v.check() is None
    clock.now += 2.0
    trip = v.check()
    assert trip is not None and trip.reason == "abort_when" and trip.metric == "errors"
    assert trip.detail == "errors (watching experiment) was 50%, above 20% for 2s"
    values["errors"] = 0.0
    assert v.check() is trip  # once tripped, it stays tripped
    [record] = v.records
    assert record.tripped and record.longest == pytest.approx(2.0) and record.worst == 0.5


def test_below_and_no_data() -> None:
    values: dict[str, float | Reading | None] = {"rps": None}
    v, _clock = valve({"abort_when": [{"metric": "rps", "below": "50/s"}]}, values)
    assert v.check() is None  # no data is not a breach
    values["rps"] = 80.0
    assert v.check() is None
    values["rps"] = 10.0
    trip = v.check()
    assert trip is not None and "below 50/s" in trip.detail


def test_data_that_cannot_tell_neither_starts_nor_stops_the_breach_clock() -> None:
    """A hang: the first requests failed, then none has an outcome yet for a while."""
    values: dict[str, float | Reading | None] = {"errors": 1.0}
    v, clock = valve({"abort_when": [{"metric": "errors", "above": "20%", "for": "2s"}]}, values)
    assert v.check() is None
    values["errors"] = None  # no outcome known: the breach goes on
    for _ in range(15):
        clock.now += 0.1
        assert v.check() is None
    clock.now += 0.5
    values["errors"] = 1.0
    trip = v.check()
    assert trip is not None and v.records[0].unknown == 15
    fresh, clock = valve({"abort_when": [{"metric": "errors", "above": "20%"}]}, {"errors": None})
    clock.now += 60
    assert fresh.check() is None  # never data: never a trip


def test_a_breach_is_dated_from_when_the_data_say_it_began() -> None:
    """The first bad request was 1.5 s ago: a 2 s condition trips 0.5 s later, not 2 s later."""
    values: dict[str, float | Reading | None] = {"errors": Reading(1.0, True, since=998.5)}
    v, clock = valve({"abort_when": [{"metric": "errors", "above": "20%", "for": "2s"}]}, values)
    assert v.check() is None
    clock.now += 0.4
    values["errors"] = Reading(1.0, True, since=999.9)  # a later start cannot move it forward
    assert v.check() is None
    clock.now += 0.1
    trip = v.check()
    assert trip is not None and trip.at == 1000.5
    future, _ = valve(
        {"abort_when": [{"metric": "errors", "above": "20%", "for": "1s"}]},
        {"errors": Reading(1.0, True, since=2000.0)},
    )
    assert future.check() is None  # a start in the future counts from now


def test_time_limit_and_kill_file(tmp_path: Path) -> None:
    v, clock = valve({"max_duration": "10s"}, {})
    clock.now += 9.9
    assert v.check() is None
    clock.now += 0.1
    trip = v.check()
    assert trip is not None and trip.reason == "max_duration"
    halt = tmp_path / "HALT"
    v, _ = valve({}, {}, kill_files=[halt])
    assert v.check() is None
    halt.touch()
    trip = v.check()
    assert trip is not None and trip.reason == "kill_file"


def test_pull_keeps_the_first_reason() -> None:
    v, _ = valve({}, {})
    first = v.pull("signal", "SIGTERM")
    assert v.pull("signal", "SIGINT") is first
    assert v.check() is first


@pytest.mark.parametrize("group", ["control", "all"])
def test_the_group_is_passed_to_the_reading(group: str) -> None:
    readings = Readings({})
    v = Valve(
        Safety.model_validate({"abort_when": [{"metric": "p95", "above": "1s", "group": group}]}),
        readings,
    )
    v.check()
    assert readings.asked == [("p95", group)]
    [record] = v.records
    assert record.to_json()["watched"] == f"watching {group}"
    assert record.to_json()["condition"] == "p95 above 1s for 0s"


def test_every_kill_file_and_guard_stops_the_run(tmp_path: Path) -> None:
    halt, declared = tmp_path / "HALT", tmp_path / "stop-chaos"
    v, _ = valve({}, {}, kill_files=[halt, declared])
    declared.touch()  # the experiment's own file does not hide `chaoskit halt`'s, nor it this
    trip = v.check()
    assert trip is not None and trip.reason == "kill_file" and str(declared) in trip.detail
    ground: list[tuple[str, str]] = []
    v, _ = valve({}, {}, guards=[lambda: ground[0] if ground else None])
    assert v.check() is None
    ground.append(("disk", "only 1.0 MiB left"))
    trip = v.check()
    assert trip is not None and (trip.reason, trip.detail) == ("disk", "only 1.0 MiB left")
