"""Site policy: every rule refuses what it must, names the field and the rule."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
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
    assert unset.path == ("blast_radius",) and "100%, the default" in unset.message


def test_target_kinds_and_fault_types() -> None:
    policy = Policy.model_validate(
        {"allowed_target_kinds": ["process"], "allowed_fault_types": ["crash"]}
    )
    found = policy.check(exp())
    assert [(v.path, v.rule) for v in found] == [
        (("targets", "backends", "kind"), "allowed_target_kinds"),
        (("faults", 0, "type"), "allowed_fault_types"),
    ]


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
