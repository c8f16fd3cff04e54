"""Site policy: every rule refuses what it must, names the field and the rule."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chaoskit.loader import load_model
from chaoskit.model import Experiment
from chaoskit.safety.policy import Policy, TimeWindow, find_policy

EXP: dict[str, Any] = {
    "name": "t",
    "system": {"stack": {"replicas": 3}},
    "targets": {"backends": {"kind": "proxy", "select": "backend-*"}},
    "load": {"url": "http://127.0.0.1:${ports.frontend}/", "rate": "10/s"},
    "steady_state": [{"name": "errors", "of": "error_rate"}],
    "faults": [{"type": "latency", "target": "backends", "latency": "100ms"}],
    "blast_radius": {"count": 1},
    "safety": {"abort_when": [{"metric": "errors", "above": "20%", "for": "2s"}]},
}


def exp(**changes: Any) -> Experiment:
    doc = copy.deepcopy(EXP)
    doc.update(changes)
    return Experiment.model_validate(doc)


def rules(policy: Policy, experiment: Experiment) -> list[str]:
    return [v.rule for v in policy.check(experiment)]


def test_the_repository_default_policy_loads(root: Path) -> None:
    policy = load_model(root / "safety" / "default.yaml", Policy)
    assert policy.max_blast_radius.fraction == 0.5
    assert policy.check(exp()) == []


def test_blast_radius_caps() -> None:
    policy = Policy.model_validate({"max_blast_radius": {"fraction": "50%", "count": 2}})
    assert rules(policy, exp(blast_radius={"count": 3})) == ["max_blast_radius.count"]
    assert rules(policy, exp(blast_radius={"fraction": 0.75})) == ["max_blast_radius.fraction"]
    [unset] = policy.check(exp(blast_radius={}))
    assert unset.path == ("blast_radius",) and "3 would be hit" in unset.message


def test_the_draw_is_judged_when_the_file_says_which_targets_there_will_be() -> None:
    """The stack's three proxies are known before the run: 34% of 3 is one target (33%), under
    a 50% cap; every target (the default) is not, nor is 67%. A selector chaoskit cannot
    resolve ahead (containers) is judged on the fraction as written."""
    policy = Policy.model_validate({"max_blast_radius": {"fraction": "50%"}})
    assert rules(policy, exp(blast_radius={"fraction": "34%"})) == []
    [every] = policy.check(exp(blast_radius={}))
    assert "3 of them (100%) would be hit" in every.message
    [two] = policy.check(exp(blast_radius={"fraction": "67%"}))
    assert "2 of them (67%)" in two.message and two.path == ("blast_radius", "fraction")
    one = exp(system={"stack": {"replicas": 1}}, blast_radius={})
    assert rules(policy, one) == []  # a group of one can only be hit whole
    containers = {
        "targets": {"backends": {"kind": "container", "select": "backend-*"}},
        "faults": [{"type": "crash", "target": "backends"}],
    }
    boxes = exp(**containers, blast_radius={"fraction": "34%"})
    assert rules(policy, boxes) == []
    every_box = exp(**containers, blast_radius={})
    assert rules(policy, every_box) == ["max_blast_radius.fraction"]


def test_target_kinds_and_fault_types() -> None:
    policy = Policy.model_validate(
        {"allowed_target_kinds": ["process"], "allowed_fault_types": ["crash"]}
    )
    found = policy.check(exp())
    assert [(v.path, v.rule) for v in found] == [
        (("targets", "backends", "kind"), "allowed_target_kinds"),
        (("faults", 0, "type"), "allowed_fault_types"),
    ]


@pytest.mark.parametrize(
    ("target", "fault"),
    [
        ({"kind": "host", "select": "h1"}, {"type": "host_down"}),
        ({"kind": "service", "select": "web"}, {"type": "crash"}),
        ({"kind": "node", "select": "n1"}, {"type": "drain"}),
    ],
)
def test_whole_hosts_swarm_tasks_and_nodes_only_where_a_policy_lists_them(
    target: dict[str, str], fault: dict[str, str]
) -> None:
    """A policy written before these kinds existed, silent on kinds, does not start allowing
    the faults that reach widest."""
    wide = exp(targets={"wide": target}, faults=[{**fault, "target": "wide"}])
    assert rules(Policy.model_validate({}), wide) == ["allowed_target_kinds"]
    listed = Policy.model_validate({"allowed_target_kinds": [target["kind"]]})
    assert rules(listed, wide) == []


def test_protected_selectors_by_name_and_by_labels() -> None:
    policy = Policy.model_validate(
        {
            "protected": [
                {"select": "backend-1", "reason": "the primary"},
                {"kind": "container", "labels": {"tier": "db"}},
            ]
        }
    )
    [hit] = policy.check(exp())
    assert hit.rule == "protected" and "the primary" in hit.message
    boxes = {"db": {"kind": "container", "labels": {"tier": "db", "x": "y"}}}
    other = exp(targets=boxes, faults=[{"type": "pause", "target": "db"}])
    assert rules(policy, other) == ["protected"]
    safe = {"db": {"kind": "container", "labels": {"tier": "web"}}}
    assert rules(policy, exp(targets=safe, faults=[{"type": "pause", "target": "db"}])) == []


def test_protection_of_concrete_targets_at_run_time() -> None:
    policy = Policy.model_validate({"protected": [{"kind": "container", "select": "*-db"}]})
    assert policy.protection("container", "orders-db", {}) is not None
    assert policy.protection("process", "orders-db", {}) is None
    assert policy.protection("container", "orders-api", {}) is None


def test_durations() -> None:
    policy = Policy.model_validate({"max_fault_duration": "20s", "max_run_duration": "15m"})
    long = exp(safety={"max_duration": "20m", "abort_when": EXP["safety"]["abort_when"]})
    assert rules(policy, long) == ["max_fault_duration", "max_run_duration"]
    short = exp(
        faults=[{"type": "latency", "target": "backends", "latency": "1s", "duration": "20s"}]
    )
    assert rules(policy, short) == []


def test_required_abort_conditions() -> None:
    policy = Policy.model_validate(
        {"require_abort": [{"of": "error_rate", "at_most": "10%", "within": "5s"}]}
    )
    assert rules(policy, exp()) == ["require_abort[0]"]  # above 20% is too lax
    strict = {"abort_when": [{"metric": "errors", "above": "5%", "for": "2s"}]}
    assert rules(policy, exp(safety=strict)) == []
    slow = {"abort_when": [{"metric": "errors", "above": "5%", "for": "10s"}]}
    assert rules(policy, exp(safety=slow)) == ["require_abort[0]"]
    floor = Policy.model_validate({"require_abort": [{"of": "throughput", "at_least": "5/s"}]})
    with_tp = exp(
        steady_state=[{"name": "errors", "of": "error_rate"}, {"name": "tp", "of": "throughput"}],
        safety={"abort_when": [{"metric": "tp", "below": "6/s"}]},
    )
    assert rules(floor, with_tp) == []
    assert rules(floor, exp()) == ["require_abort[0]"]


BERLIN_WEEKDAYS = {
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "start": "09:00",
    "end": "17:00",
    "timezone": "Europe/Berlin",
}


@pytest.mark.parametrize(
    ("moment", "allowed"),
    [
        (datetime(2026, 11, 23, 8, 30, tzinfo=UTC), True),  # Monday 09:30 in Berlin
        (datetime(2026, 11, 23, 7, 30, tzinfo=UTC), False),  # 08:30 in Berlin
        (datetime(2026, 11, 22, 12, 0, tzinfo=UTC), False),  # Sunday
        (datetime(2026, 7, 6, 15, 30, tzinfo=UTC), False),  # 17:30 in summer time
    ],
)
def test_time_windows_with_a_fixed_clock(moment: datetime, allowed: bool) -> None:
    policy = Policy.model_validate({"windows": [BERLIN_WEEKDAYS]})
    assert policy.allows(moment) is allowed
    assert (rules(policy, exp()) if allowed else []) == []
    found = rules(policy, exp()) + [v.rule for v in policy.check(exp(), now=moment)]
    assert ("windows" in found) is not allowed


def test_windows_spanning_midnight() -> None:
    night = TimeWindow.model_validate({"days": ["fri"], "start": "22:00", "end": "02:00"})
    assert night.contains(datetime(2026, 11, 27, 23, 0, tzinfo=UTC))  # Friday night
    assert night.contains(datetime(2026, 11, 28, 1, 0, tzinfo=UTC))  # early Saturday
    assert not night.contains(datetime(2026, 11, 28, 23, 0, tzinfo=UTC))  # Saturday night


def test_bad_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Olympus'"):
        TimeWindow.model_validate({"timezone": "Mars/Olympus"})


def test_find_policy_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_policy(None, {})[1] == "built-in defaults"
    (tmp_path / "safety").mkdir()
    (tmp_path / "safety" / "default.yaml").write_text("max_fault_duration: 1m\n")
    policy, source = find_policy(None, {})
    assert source == "safety/default.yaml" and str(policy.max_fault_duration) == "1m"
    (tmp_path / "env.yaml").write_text("max_fault_duration: 2m\n")
    assert str(find_policy(None, {"CHAOSKIT_POLICY": "env.yaml"})[0].max_fault_duration) == "2m"
    (tmp_path / "cli.yaml").write_text("max_fault_duration: 3m\n")
    explicit = find_policy(Path("cli.yaml"), {"CHAOSKIT_POLICY": "env.yaml"})[0]
    assert str(explicit.max_fault_duration) == "3m"


def at(text: str) -> datetime:
    """A moment written with its offset, e.g. ``2026-11-23T09:30+01:00``."""
    return datetime.fromisoformat(text)


def window(days: str, start: str, end: str, zone: str = "UTC") -> dict[str, Any]:
    return {"days": days.split(","), "start": start, "end": end, "timezone": zone}


EVERY_DAY = "mon,tue,wed,thu,fri,sat,sun"
SPRING = "2026-03-28T10:00+00:00"
"""The day before Berlin's clocks go forward."""


def until(policy: Policy, moment: str) -> str | None:
    """``open_until`` in UTC, as text."""
    found = policy.open_until(at(moment))
    return None if found is None else found.astimezone(UTC).isoformat()


def test_blackouts_refuse_every_moment_of_their_dates_in_the_policy_time_zone() -> None:
    policy = Policy.model_validate(
        {
            "timezone": "Europe/Berlin",
            "blackouts": [{"start": "2026-12-24", "end": "2026-12-26", "reason": "freeze"}],
        }
    )
    assert policy.allows(at("2026-12-23T22:59:59+00:00"))  # 23:59:59 in Berlin
    assert not policy.allows(at("2026-12-23T23:00:00+00:00"))  # midnight in Berlin
    assert not policy.allows(at("2026-12-26T22:59:59+00:00"))
    assert policy.allows(at("2026-12-26T23:00:00+00:00"))  # the 27th in Berlin
    [refused] = policy.check(exp(), now=at("2026-12-25T12:00+01:00"))
    assert refused.rule == "blackouts"
    assert str(refused) == (
        "2026-12-25 is a blackout date in Europe/Berlin (freeze): no experiment may run on it "
        "[policy: blackouts]"
    )
    assert policy.check(exp(), now=at("2026-12-27T12:00+01:00")) == []
    assert policy.check(exp()) == []  # without a clock, a file is not invalid


def test_a_policy_time_zone_must_exist() -> None:
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Atlantis'"):
        Policy.model_validate({"timezone": "Europe/Atlantis"})


def test_a_moment_without_a_time_zone_is_refused() -> None:
    policy = Policy.model_validate({"windows": [BERLIN_WEEKDAYS]})
    with pytest.raises(ValueError, match="has no time zone"):
        policy.allows(datetime(2026, 11, 23, 10, 0))
    with pytest.raises(ValueError, match="has no time zone"):
        policy.open_until(datetime(2026, 11, 23, 10, 0))


def test_a_run_refused_by_the_clock_names_the_windows() -> None:
    policy = Policy.model_validate({"windows": [BERLIN_WEEKDAYS]})
    [refused] = policy.check(exp(), now=at("2026-11-22T12:00+00:00"))  # a Sunday
    assert str(refused) == (
        "2026-11-22T12:00+00:00 is outside every allowed window "
        "(mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin): no experiment may run now "
        "[policy: windows]"
    )


@pytest.mark.parametrize(
    ("windows", "moment", "expected"),
    [
        # one window: its end, in winter and in summer time
        ([BERLIN_WEEKDAYS], "2026-11-23T09:30+01:00", "2026-11-23T16:00:00+00:00"),
        ([BERLIN_WEEKDAYS], "2026-07-06T09:30+02:00", "2026-07-06T15:00:00+00:00"),
        # spanning midnight: the end is the next morning
        ([window("fri", "22:00", "02:00")], "2026-11-27T23:00+00:00", "2026-11-28T02:00:00+00:00"),
        ([window("fri", "22:00", "02:00")], "2026-11-28T01:00+00:00", "2026-11-28T02:00:00+00:00"),
        # windows that touch count as one, across midnight too
        (
            [window("mon", "09:00", "12:00"), window("mon", "12:00", "14:00")],
            "2026-11-23T10:00+00:00",
            "2026-11-23T14:00:00+00:00",
        ),
        (
            [window("fri", "20:00", "23:59:59"), window("sat", "00:00", "06:00")],
            "2026-11-27T21:00+00:00",
            "2026-11-28T06:00:00+00:00",
        ),
        (
            [window("fri", "20:00", "00:00"), window("sat", "00:00", "06:00")],
            "2026-11-27T21:00+00:00",
            "2026-11-28T06:00:00+00:00",
        ),
        # overlapping windows: the later end; a gap ends the first
        (
            [window("mon", "09:00", "12:00"), window("mon", "11:00", "15:00")],
            "2026-11-23T09:30+00:00",
            "2026-11-23T15:00:00+00:00",
        ),
        (
            [window("mon", "09:00", "12:00"), window("mon", "12:30", "15:00")],
            "2026-11-23T09:30+00:00",
            "2026-11-23T12:00:00+00:00",
        ),
        # windows in two zones that hand over to each other
        (
            [window("mon", "09:00", "17:00", "Europe/Berlin"), window("mon", "11:00", "13:00")],
            "2026-11-23T10:00+01:00",
            "2026-11-23T16:00:00+00:00",
        ),
        (
            [window("mon", "09:00", "17:00", "Europe/Berlin"), window("mon", "15:00", "18:00")],
            "2026-11-23T10:00+01:00",
            "2026-11-23T18:00:00+00:00",
        ),
        # whole days: to midnight at the end of the last one
        (
            [window("mon,tue", "00:00", "23:59:59")],
            "2026-11-23T10:00+00:00",
            "2026-11-25T00:00:00+00:00",
        ),
        # spring forward in Berlin (02:00 CET -> 03:00 CEST, 29 March 2026): 01:00-05:00 lasts 3 h
        (
            [window("sun", "01:00", "05:00", "Europe/Berlin")],
            "2026-03-29T01:30+01:00",
            "2026-03-29T03:00:00+00:00",
        ),
        # ... and a window ending in the skipped hour ends when the clock jumps over it
        (
            [window("sun", "01:00", "02:30", "Europe/Berlin")],
            "2026-03-29T01:30+01:00",
            "2026-03-29T01:00:00+00:00",
        ),
        # fall back (03:00 CEST -> 02:00 CET on 25 October 2026): 01:00-05:00 lasts 5 h
        (
            [window("sun", "01:00", "05:00", "Europe/Berlin")],
            "2026-10-25T01:30+02:00",
            "2026-10-25T04:00:00+00:00",
        ),
        # ... and 02:30-04:00 is left when the clock goes back to 02:00
        (
            [window("sun", "02:30", "04:00", "Europe/Berlin")],
            "2026-10-25T02:45+02:00",
            "2026-10-25T01:00:00+00:00",
        ),
        # every hour of every day (over a daylight-saving change too): nothing closes
        ([window(EVERY_DAY, "00:00", "23:59:59", "Europe/Berlin")], SPRING, None),
        ([window(EVERY_DAY, "06:00", "18:00"), window(EVERY_DAY, "18:00", "06:00")], SPRING, None),
        ([], "2026-11-23T10:00+00:00", None),
    ],
)
def test_open_until_the_window_closes(
    windows: list[dict[str, Any]], moment: str, expected: str | None
) -> None:
    policy = Policy.model_validate({"windows": windows})
    assert until(policy, moment) == expected
    if expected is not None:
        assert_open_until(policy, at(moment))


def test_open_until_is_now_when_no_run_may_start() -> None:
    policy = Policy.model_validate({"windows": [BERLIN_WEEKDAYS]})
    assert until(policy, "2026-11-22T12:00+00:00") == "2026-11-22T12:00:00+00:00"
    closed = Policy.model_validate({"blackouts": [{"start": "2026-11-22"}]})
    assert until(closed, "2026-11-22T12:00+00:00") == "2026-11-22T12:00:00+00:00"


def test_open_until_the_next_blackout_date_begins() -> None:
    frozen = {"start": "2026-12-24", "end": "2026-12-26", "reason": "freeze"}
    berlin = Policy.model_validate({"timezone": "Europe/Berlin", "blackouts": [frozen]})
    assert until(berlin, "2026-12-23T12:00+01:00") == "2026-12-23T23:00:00+00:00"
    assert until(berlin, "2026-12-27T00:00+01:00") is None  # no blackout ahead any more
    assert until(berlin, "2026-01-10T12:00+01:00") == "2026-12-23T23:00:00+00:00"  # far ahead
    evenings = Policy.model_validate(
        {
            "timezone": "Europe/Berlin",
            "blackouts": [frozen],
            "windows": [window("mon,tue,wed,thu,fri,sat,sun", "20:00", "02:00", "Europe/Berlin")],
        }
    )
    # the window runs to 02:00 on the 24th, but the blackout starts at midnight before it
    assert until(evenings, "2026-12-23T21:00+01:00") == "2026-12-23T23:00:00+00:00"
    # the window ends first on the 22nd
    assert until(evenings, "2026-12-21T21:00+01:00") == "2026-12-22T01:00:00+00:00"
    assert_open_until(evenings, at("2026-12-23T21:00+01:00"))


def assert_open_until(policy: Policy, moment: datetime) -> None:
    """Every minute from ``moment`` to ``open_until`` is allowed; ``open_until`` is not."""
    end = policy.open_until(moment)
    assert end is not None
    step = moment
    while step < end:
        assert policy.allows(step), step
        step += timedelta(minutes=1)
    assert policy.allows(end - timedelta(seconds=1))
    assert not policy.allows(end)


@pytest.mark.parametrize("start", ["2026-03-27T00:00+00:00", "2026-10-23T00:00+00:00"])
def test_open_until_agrees_with_allows_minute_by_minute_over_a_daylight_saving_change(
    start: str,
) -> None:
    policy = Policy.model_validate(
        {
            "timezone": "Europe/Berlin",
            "blackouts": [{"start": "2026-03-30"}, {"start": "2026-10-26"}],
            "windows": [
                window("fri,sat,sun", "01:00", "02:30", "Europe/Berlin"),
                window("sun", "02:45", "04:00", "Europe/Berlin"),
                window("sat", "22:00", "00:30", "Europe/Berlin"),
                window("sun,mon", "09:00", "12:00"),
            ],
        }
    )
    moment = at(start)
    checked = 0
    while moment < at(start) + timedelta(days=4):
        if policy.allows(moment):
            assert_open_until(policy, moment)
            checked += 1
        moment += timedelta(minutes=7)
    assert checked > 50


@pytest.mark.parametrize(
    "text",
    [
        "timezone: {zone}\n",
        "windows: [{{timezone: {zone}}}]\n",
    ],
)
def test_a_time_zone_too_long_for_a_file_name_is_a_located_error(tmp_path: Path, text: str) -> None:
    """Found by the file fuzz: ZoneInfo looks a name up as a file, and a name of 1,000
    letters raised OSError (File name too long), a traceback instead of an error."""
    from chaoskit.loader import LoadError

    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n" + text.format(zone="a" * 1000))
    with pytest.raises(LoadError, match="unknown time zone") as raised:
        load_model(path, Policy)
    assert f"{path}:2:" in str(raised.value)
