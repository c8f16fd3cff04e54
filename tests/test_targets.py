"""Selectors resolve to concrete targets; the blast radius draw is seeded, recorded and checked
against the site policy before anything is touched."""

from __future__ import annotations

import pytest

from chaoskit.drivers.base import Target
from chaoskit.model import BlastRadius
from chaoskit.model.system import ContainerTarget, ProxyTarget
from chaoskit.runner.targets import TargetError, check_draw, draw, select
from chaoskit.safety.policy import Policy

PROXIES = [Target("proxy", f"backend-{i}") for i in range(1, 6)] + [Target("proxy", "db")]
BOXES = [
    Target("container", "api-1", {"tier": "web"}),
    Target("container", "api-2", {"tier": "web"}),
    Target("container", "db-1", {"tier": "db"}),
]


def test_select_by_glob_and_by_labels() -> None:
    spec = ProxyTarget(kind="proxy", select="backend-*")
    assert [t.name for t in select("b", spec, PROXIES)] == [f"backend-{i}" for i in range(1, 6)]
    web = ContainerTarget(kind="container", labels={"tier": "web"})
    assert [t.name for t in select("w", web, BOXES + PROXIES)] == ["api-1", "api-2"]


def test_a_selector_that_matches_nothing_names_what_exists() -> None:
    with pytest.raises(
        TargetError, match=r"target 'x' .* matches nothing; found: api-1, api-2, db-1"
    ):
        select("x", ContainerTarget(kind="container", select="web-*"), BOXES)


def test_draw_is_reproducible_from_its_seed() -> None:
    radius = BlastRadius(fraction=0.4, seed=7, control="concurrent")
    first, again = draw(PROXIES, radius), draw(list(reversed(PROXIES)), radius)
    assert first == again and first.seed == 7
    assert len(first.experiment) == 3 and len(first.control) == 3  # ceil(0.4 x 6)
    assert {t.name for t in first.experiment} | {t.name for t in first.control} == {
        t.name for t in PROXIES
    }
    assert first.to_json()["seed"] == 7


def test_draw_without_seed_records_the_one_it_chose() -> None:
    drawn = draw(PROXIES, BlastRadius(count=2))
    assert draw(PROXIES, BlastRadius(count=2, seed=drawn.seed)) == drawn
    assert drawn.control == []  # control: none


def test_draws_spread_over_every_target() -> None:
    hits = dict.fromkeys((t.name for t in PROXIES), 0)
    for seed in range(600):
        for t in draw(PROXIES, BlastRadius(count=1, seed=seed)).experiment:
            hits[t.name] += 1
    assert all(60 <= n <= 140 for n in hits.values()), hits  # ~100 each


def test_impossible_draws_are_refused() -> None:
    with pytest.raises(TargetError, match="only 3 target"):
        draw(BOXES, BlastRadius(count=4))
    with pytest.raises(TargetError, match="needs a target left over"):
        draw(BOXES, BlastRadius(count=3, control="concurrent"))


def test_the_concrete_draw_is_checked_against_the_policy() -> None:
    policy = Policy.model_validate(
        {
            "protected": [{"select": "db*", "reason": "data"}],
            "max_blast_radius": {"fraction": "50%", "count": 2},
        }
    )
    drawn = draw(BOXES, BlastRadius(count=3, seed=1))
    rules = sorted(v.rule for v in check_draw(policy, "boxes", drawn, len(BOXES)))
    assert rules == ["max_blast_radius.count", "max_blast_radius.fraction", "protected"]
    single = draw([Target("process", "api")], BlastRadius(count=1, seed=1))
    assert check_draw(policy, "one", single, 1) == []  # a group of one can be hit in full


def test_a_process_target_with_pids_selects_exactly_those_processes() -> None:
    import os

    from chaoskit.model.system import ProcessTarget

    me = ProcessTarget(kind="process", pids=[os.getpid()])
    others = [Target("process", "worker", {}, {"pid": 1, "start": 0})]
    [found] = select("me", me, others)
    assert found.ref["pid"] == os.getpid() and found.name == f"pid-{os.getpid()}"
    gone = ProcessTarget(kind="process", pids=[2**22 + 7])  # above Linux's pid_max default
    with pytest.raises(TargetError, match=f"names pid {2**22 + 7}, but no such process runs"):
        select("gone", gone, others)
