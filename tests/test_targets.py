"""Selectors resolve to concrete targets; the blast radius draw is seeded, recorded and checked
against the site policy before anything is touched."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from waiting import wait_until

from chaoskit.drivers.base import Target
from chaoskit.drivers.process import process_target
from chaoskit.model import BlastRadius
from chaoskit.model.system import (
    SERVICE_LABEL,
    ContainerTarget,
    HostTarget,
    ProcessTarget,
    ProxyTarget,
    ServiceTarget,
)
from chaoskit.runner.system.parts import RUN_LABEL
from chaoskit.runner.targets import (
    Draw,
    TargetError,
    check_draw,
    check_places,
    draw,
    host_members,
    hosts,
    select,
)
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
    assert len(first.experiment) == 2 and len(first.control) == 4  # 0.4 x 6, rounded down
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


SPREAD = [
    Target("container", f"{host}/api-{i}", {"host": host, "zone": zone})
    for host, zone in (("h1", "a"), ("h2", "a"), ("h3", "b"))
    for i in (1, 2)
] + [Target("process", "local-api")]  # no host label: this machine


@pytest.mark.parametrize("seed", range(40))
def test_a_spread_draw_hits_one_target_per_host_or_zone_and_stays_seeded(seed: int) -> None:
    by_host = draw(SPREAD, BlastRadius(count=4, spread="host", seed=seed))
    hosts = [t.labels.get("host", "this machine") for t in by_host.experiment]
    assert sorted(hosts) == ["h1", "h2", "h3", "this machine"]
    assert draw(list(reversed(SPREAD)), BlastRadius(count=4, spread="host", seed=seed)) == by_host
    by_zone = draw(SPREAD, BlastRadius(count=3, spread="zone", seed=seed))
    assert sorted(t.labels.get("zone", "-") for t in by_zone.experiment) == ["-", "a", "b"]
    capped = draw(SPREAD, BlastRadius(count=5, max_per_host=2, seed=seed, control="concurrent"))
    on = [t.labels.get("host", "this machine") for t in capped.experiment]
    assert len(on) == 5 and max(on.count(h) for h in set(on)) <= 2


def test_a_spread_draw_still_reaches_every_target_over_seeds() -> None:
    radii = [BlastRadius(count=2, spread="host", seed=seed) for seed in range(200)]
    seen = {t.name for radius in radii for t in draw(SPREAD, radius).experiment}
    assert seen == {t.name for t in SPREAD}


@pytest.mark.parametrize("seed", range(60))
def test_a_spread_draw_finds_the_draw_that_exists_where_taking_the_first_fit_would_not(
    seed: int,
) -> None:
    """Two zones, a cap of one per host: taking t1 (h1, a) first leaves nothing (t2 is on h1,
    t3 in zone a); {t2, t3} keeps to both rules, whatever the seed's order."""
    targets = [
        Target("container", "t1", {"host": "h1", "zone": "a"}),
        Target("container", "t2", {"host": "h1", "zone": "b"}),
        Target("container", "t3", {"host": "h2", "zone": "a"}),
    ]
    drawn = draw(targets, BlastRadius(count=2, spread="zone", max_per_host=1, seed=seed))
    assert sorted(t.name for t in drawn.experiment) == ["t2", "t3"]


def test_a_draw_without_spread_is_the_one_it_always_was() -> None:
    """Adding spread must not change the draws of experiments that do not ask for it."""
    radius = BlastRadius(count=3, seed=11)
    ordered = sorted(SPREAD, key=lambda t: t.name)
    expected = sorted(random.Random(11).sample(ordered, 3), key=lambda t: t.name)
    assert draw(SPREAD, radius).experiment == expected


def test_a_spread_that_the_targets_cannot_give_says_where_they_are() -> None:
    with pytest.raises(
        TargetError,
        match=r"asks for 5 of 7 targets with spread: host \(one per host\), but no draw that "
        r"large keeps to them: by host, they are on h1 \(2\), h2 \(2\), h3 \(2\), this "
        r"machine \(1\)",
    ):
        draw(SPREAD, BlastRadius(count=5, spread="host", seed=1))
    with pytest.raises(TargetError, match="max_per_host: 1"):
        draw(SPREAD[:2], BlastRadius(count=2, max_per_host=1, seed=1))


def test_the_policy_caps_the_hosts_and_zones_a_run_touches_across_its_groups() -> None:
    policy = Policy.model_validate({"max_blast_radius": {"hosts": 2, "zones": 1}})
    one = draw(SPREAD[:2], BlastRadius(count=1, seed=3))  # on h1
    two = draw(SPREAD[2:4], BlastRadius(count=1, seed=3))  # on h2: still zone a
    assert check_places(policy, {"a": one, "b": two}) == []
    three = draw(SPREAD[4:6], BlastRadius(count=1, seed=3))  # on h3, zone b
    found = check_places(policy, {"a": one, "b": two, "c": three})
    assert [v.rule for v in found] == ["max_blast_radius.hosts", "max_blast_radius.zones"]
    assert "on 3 hosts (h1, h2, h3), more than the 2 allowed" in str(found[0])
    assert "on 2 zones (a, b), more than the 1 allowed" in str(found[1])


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


@pytest.fixture
def started() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real processes (argv lists), each waited for until ``/proc`` shows its own command
    line (``shown`` as argv[0], else ``argv[0]``); all killed afterwards."""
    running: list[subprocess.Popen[bytes]] = []

    def start(
        argv: list[str], executable: str | None = None, shown: str | None = None
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, executable=executable)
        running.append(process)
        first = shown or argv[0]
        wait_until(lambda: cmdline(process.pid)[:1] == [first], 5, f"{first} to start")
        return process

    yield start
    for process in running:
        process.kill()
        process.wait(5)


def cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]


def refusals(policy: Policy, target: Target) -> list[str]:
    drawn = draw([target], BlastRadius(count=1, seed=1))
    return [str(v) for v in check_draw(policy, "t", drawn, 1)]


def protecting(select: str, reason: str = "production database") -> Policy:
    return Policy.model_validate({"protected": [{"select": select, "reason": reason}]})


def test_a_pid_target_is_protected_by_its_command_line(
    started: Callable[..., subprocess.Popen[bytes]],
) -> None:
    prod = started(["bash", "-c", "exec -a prod-db sleep 60"], shown="prod-db")
    [target] = select("db", ProcessTarget(kind="process", pids=[prod.pid]), [])
    assert target.name == f"pid-{prod.pid}"  # chaoskit's own name says nothing of prod
    [refused] = refusals(protecting("prod-db*"), target)
    assert refused == (
        f"targets.t: process 'pid-{prod.pid}' (pid {prod.pid}, process sleep, command line "
        f"'prod-db 60') is protected by 'prod-db*' as 'prod-db': production database "
        "[policy: protected]"
    )
    assert refusals(protecting("staging-*"), target) == []


def test_a_process_is_protected_by_its_own_name_its_executable_and_argv(
    started: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    long_name = tmp_path / "orders-database-primary"  # longer than the 15 characters of comm
    shutil.copy(sleep, long_name)
    copy = started(["worker", "60"], executable=str(long_name))
    target = process_target(copy.pid, "worker-1")  # as a run names a process it started
    assert Path(f"/proc/{copy.pid}/comm").read_text().strip() == "orders-database"
    assert refusals(protecting("orders-database"), target)  # its own name (comm)
    assert refusals(protecting("orders-database-primary"), target)  # its executable
    assert refusals(protecting(f"{tmp_path}/*"), target)  # ... by its path
    assert refusals(protecting("worker"), target)  # argv[0]
    assert refusals(protecting("worker-1"), target)  # chaoskit's name for it
    assert refusals(protecting("sleep"), target) == []
    linked = tmp_path / "cache-prod"
    linked.symlink_to(sleep)  # comm is the name it was started by; exe the file it runs
    via_link = started(["cache", "60"], executable=str(linked))
    target = process_target(via_link.pid)
    assert refusals(protecting("cache-prod"), target)
    assert refusals(protecting("sleep"), target)
    assert refusals(protecting("orders-*"), target) == []
    python = started([sys.executable, "-c", "import time; time.sleep(60)", "--db=prod-orders"])
    target = process_target(python.pid)
    [refused] = refusals(protecting("*--db=prod-*", "orders"), target)
    assert f"pid {python.pid}" in refused and refused.endswith(": orders [policy: protected]")


def test_a_pid_reused_by_another_process_is_judged_by_chaoskits_name_only(
    started: Callable[..., subprocess.Popen[bytes]],
) -> None:
    prod = started(["bash", "-c", "exec -a prod-db sleep 60"], shown="prod-db")
    real = process_target(prod.pid)
    other = Target("process", "other", {}, {**real.ref, "start": int(real.ref["start"]) + 1})
    assert refusals(protecting("prod-db*"), other) == []  # not the process it named: no names
    assert refusals(protecting("prod-db*"), real) != []


def test_containers_are_protected_by_name_compose_service_and_labels() -> None:
    compose = {"com.docker.compose.service": "db", "com.docker.compose.project": "shop"}
    box = Target("container", "shop-db-1", compose, {"id": "0" * 64})
    assert refusals(protecting("db"), box) == [
        "targets.t: container 'shop-db-1' (compose service db) is protected by 'db' as 'db': "
        "production database [policy: protected]"
    ]
    assert refusals(protecting("shop-db-*"), box)
    assert refusals(protecting("/shop-db-1"), box)  # as Docker's API spells it
    raw = Target("container", "/shop-db-1", {}, {"id": "0" * 64})
    assert refusals(protecting("shop-db-1"), raw)
    labelled = Policy.model_validate(
        {"protected": [{"kind": "container", "labels": {"com.docker.compose.project": "shop"}}]}
    )
    assert refusals(labelled, box) == [
        "targets.t: container 'shop-db-1' (compose service db) is protected by labels "
        "com.docker.compose.project=shop [policy: protected]"
    ]
    assert refusals(protecting("web"), box) == []
    process = Policy.model_validate({"protected": [{"kind": "process", "select": "db"}]})
    assert refusals(process, box) == []  # a protected entry of another kind


ON_HOSTS = [
    Target("proxy", "s1/web", {"host": "h1", "zone": "a"}),
    Target("process", "worker", {"host": "h1", "zone": "a", "tier": "jobs"}),
    Target("proxy", "s2/web", {"host": "h2", "zone": "a"}),
    Target("container", "e2/db", {"host": "h2", "zone": "b", RUN_LABEL: "run-1"}),
    Target("container", "e2/theirs", {"host": "h2", "zone": "a"}),
    Target("container", "e2/earlier", {"host": "h2", RUN_LABEL: "run-0"}),
    Target("proxy", "local", {}),
]
"""Two hosts and this machine: h2 runs a container of this run (run-1), one of an earlier
run and one chaoskit never started."""


def test_hosts_are_what_the_host_labels_name_each_with_what_this_run_runs_there() -> None:
    found = {h.name: h for h in hosts(ON_HOSTS, "run-1")}
    assert sorted(found) == ["h1", "h2"], "this machine (no host label) is no host target"
    assert [t.name for t in host_members(found["h1"])] == ["worker", "s1/web"]
    assert [t.name for t in host_members(found["h2"])] == ["e2/db", "s2/web"]
    assert found["h1"].labels == {"host": "h1", "zone": "a"}, "the labels all there share"
    assert found["h2"].labels == {"host": "h2"}, "its zone is not one: no zone label"
    assert host_members(found["h2"])[0] == ON_HOSTS[3], "each member whole, for its driver"
    zone_a = HostTarget(kind="host", labels={"zone": "a"})
    assert [t.name for t in select("a", zone_a, hosts(ON_HOSTS, "run-1"))] == ["h1"]


def test_a_host_running_anything_protected_is_protected() -> None:
    policy = Policy.model_validate(
        {"protected": [{"kind": "process", "labels": {"tier": "jobs"}, "reason": "billing"}]}
    )
    h1, h2 = hosts(ON_HOSTS, "run-1")
    [refusal] = check_draw(policy, "hosts", Draw([h1], [h2], 1), 2)
    assert refusal.message == (
        "host h1 runs process 'worker', which is protected by labels tier=jobs: billing"
    )
    assert check_draw(policy, "hosts", Draw([h2], [h1], 1), 2) == []


def test_a_service_target_selects_the_tasks_of_its_services_by_service_name() -> None:
    tasks = [Target("service", n, {"node": "n1"}) for n in
             ("sw/web.1", "sw/web.2", "sw/webapp.1", "other/web.1", "api.1")]  # fmt: skip
    web = ServiceTarget(kind="service", select="web")
    assert [t.name for t in select("w", web, tasks)] == ["other/web.1", "sw/web.1", "sw/web.2"]
    on_sw = ServiceTarget(kind="service", select="web*", engine="sw")
    assert [t.name for t in select("w", on_sw, tasks)] == ["sw/web.1", "sw/web.2", "sw/webapp.1"]
    assert [t.name for t in select("a", ServiceTarget(kind="service", select="api"), tasks)] == [
        "api.1"
    ]


def test_swarm_tasks_are_protected_by_their_service_and_nodes_by_their_hostname() -> None:
    policy = Policy.model_validate(
        {"protected": [{"select": "payments"}, {"select": "db-node", "reason": "data"}]}
    )
    task = Target("service", "sw/payments.1", {}, {"service": "payments"})
    node = Target("node", "sw/db-node", {})
    for hit in (task, node):
        [refusal] = check_draw(policy, "k", Draw([hit], [], 1), 2)
        assert refusal.rule == "protected", refusal
    assert not check_draw(policy, "k", Draw([Target("node", "sw/web-node")], [], 1), 2)


def test_a_global_services_task_is_selected_by_its_service_label_whatever_its_node_name() -> None:
    task = Target("service", "sw/mon.ip-10-0-0-1.ec2.internal", {SERVICE_LABEL: "mon"})
    assert select("m", ServiceTarget(kind="service", select="mon"), [task]) == [task]


def test_a_host_counts_for_the_policy_as_everything_it_runs_and_every_zone_they_stand_in() -> None:
    members = [Target("proxy", f"s/p{i}", {"host": "h1", "zone": z}) for i, z in enumerate("abc")]
    [host] = hosts(members, None)
    assert "zone" not in host.labels, "its members disagree"
    policy = Policy.model_validate({"max_blast_radius": {"count": 2, "zones": 2}})
    [count] = check_draw(policy, "k", Draw([host], [], 1), 2)
    assert count.rule == "max_blast_radius.count" and "run 3 things" in count.message
    [zones] = check_places(policy, {"k": Draw([host], [], 1)})
    assert zones.rule == "max_blast_radius.zones" and "(a, b, c)" in zones.message
