"""The safety valve's decisions: persistence with ``for:``, units, time limit, kill file."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaoskit.model.safety import Safety
from chaoskit.safety.valve import Valve, threshold_value
from chaoskit.units import Duration, Percent, Rate


class Clock:
    """A clock the test moves by hand (the valve takes its clock as an argument)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def valve(
    spec: dict[str, object], values: dict[str, float | None], **kw: object
) -> tuple[Valve, Clock]:
    clock = Clock()
    read = lambda metric, group: values.get(metric)  # noqa: E731
    return Valve(Safety.model_validate(spec), read, clock=clock, **kw), clock  # type: ignore[arg-type]


def test_thresholds_in_base_units() -> None:
    assert threshold_value(Duration.parse("250ms")) == 0.25
    assert threshold_value(Percent.parse("20%")) == 0.2
    assert threshold_value(Rate.parse("6000/min")) == 100
    assert threshold_value(3.5) == 3.5


def test_a_breach_must_last_for_its_persistence() -> None:
    values: dict[str, float | None] = {"errors": 0.05}
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
    assert trip.detail == "errors (experiment) was 0.5, above 20% for 2s"
    values["errors"] = 0.0
    assert v.check() is trip  # once tripped, it stays tripped


def test_below_and_no_data() -> None:
    values: dict[str, float | None] = {"rps": None}
    v, _clock = valve({"abort_when": [{"metric": "rps", "below": "50/s"}]}, values)
    assert v.check() is None  # no data is not a breach
    values["rps"] = 80.0
    assert v.check() is None
    values["rps"] = 10.0
    trip = v.check()
    assert trip is not None and "below 50/s" in trip.detail


def test_time_limit_and_kill_file(tmp_path: Path) -> None:
    v, clock = valve({"max_duration": "10s"}, {})
    clock.now += 9.9
    assert v.check() is None
    clock.now += 0.1
    trip = v.check()
    assert trip is not None and trip.reason == "max_duration"
    halt = tmp_path / "HALT"
    v, _ = valve({}, {}, kill_file=halt)
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
    seen: list[tuple[str, str]] = []

    def read(metric: str, which: str) -> float | None:
        seen.append((metric, which))
        return None

    Valve(
        Safety.model_validate({"abort_when": [{"metric": "p95", "above": "1s", "group": group}]}),
        read,
    ).check()
    assert seen == [("p95", group)]
