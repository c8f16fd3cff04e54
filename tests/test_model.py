"""The experiment schema: each fault's own rules, and fields that must fit together."""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
from pydantic import TypeAdapter, ValidationError

from chaoskit.drivers.registry import BUILTIN_DRIVERS
from chaoskit.model import Experiment, Fault, InconsistentExperiment
from chaoskit.model.faults import CrashFault, DiskFullFault
from chaoskit.units import Duration

BASE: dict[str, Any] = {
    "name": "t",
    "system": {"stack": {"replicas": 3, "tmpfs": "64MiB", "faketime": True}},
    "targets": {
        "proxies": {"kind": "proxy", "select": "backend-*"},
        "procs": {"kind": "process", "select": "backend-*", "port": 8080},
        "boxes": {"kind": "container", "labels": {"app": "api"}},
    },
    "load": {"url": "http://127.0.0.1:${ports.frontend}/", "rate": "10/s"},
    "steady_state": [{"name": "errors", "of": "error_rate", "max": "1%"}],
    "faults": [{"type": "latency", "target": "proxies", "latency": "100ms"}],
}


def exp(**changes: Any) -> Experiment:
    doc = copy.deepcopy(BASE)
    doc.update(changes)
    return Experiment.model_validate(doc)


def fault(**fields: Any) -> Experiment:
    return exp(faults=[fields])


def test_base_is_valid() -> None:
    assert exp().fault_names() == ["latency-1"]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"type": "bandwidth", "target": "proxies", "rate": "0B/s"}, "must be above zero"),
        ({"type": "bandwidth", "target": "proxies", "rate": "10B/s"}, "below 1kB/s"),
        ({"type": "slicer", "target": "proxies", "average_size": "0B"}, "above zero"),
        (
            {"type": "slicer", "target": "proxies", "average_size": 10, "size_variation": 10},
            "must be below 'average_size'",
        ),
        ({"type": "latency", "target": "proxies", "latency": "-1s"}, "must not be negative"),
        ({"type": "latency", "target": "proxies", "latency": "1s", "toxicity": 1.5}, "less than"),
        ({"type": "crash", "target": "procs", "signal": "SIGNOPE"}, "not a signal name"),
        ({"type": "disk_full", "target": "procs"}, "exactly one of 'leave'"),
        ({"type": "disk_full", "target": "procs", "free": "100%"}, "below 100%"),
        ({"type": "clock_skew", "target": "procs", "skew": "0s"}, "changes nothing"),
        (
            {"type": "partition", "target": "proxies", "mode": "refuse", "direction": "inbound"},
            "needs mode 'hang'",
        ),
        ({"type": "pause", "target": "procs", "duration": "0s"}, "must be above zero"),
        ({"type": "explode", "target": "procs"}, "does not match any of the expected tags"),
    ],
)
def test_fault_rules(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        fault(**fields)


@pytest.mark.parametrize(
    ("given", "name"), [("KILL", "SIGKILL"), ("sigterm", "SIGTERM"), ("SIGSTOP", "SIGSTOP")]
)
def test_signal_names_are_normalised(given: str, name: str) -> None:
    crash = fault(type="crash", target="procs", signal=given).faults[0]
    assert isinstance(crash, CrashFault) and crash.signal == name


def test_disk_full_by_percent() -> None:
    disk = fault(type="disk_full", target="procs", free="1%").faults[0]
    assert isinstance(disk, DiskFullFault) and disk.free is not None and disk.free.fraction == 0.01


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"faults": [{"type": "crash", "target": "proxies"}]},
            "needs a container, process or service target",
        ),
        (
            {"faults": [{"type": "latency", "target": "nope", "latency": "1s"}]},
            "no target called 'nope'",
        ),
        (
            {"faults": [{"type": "latency", "target": "boxes", "latency": "1s"}]},
            "give the target's 'port'",
        ),
        (
            {"faults": [{"type": "partition", "target": "procs", "mode": "disconnect"}]},
            "needs a container target",
        ),
        (
            {"faults": [{"type": "pause", "target": "procs", "at": "10s", "duration": "25s"}]},
            "would last until 35s",
        ),
        (
            {"faults": [{"type": "pause", "target": "procs", "at": "30s"}]},
            "not inside the fault phase",
        ),
        (
            {
                "faults": [
                    {"type": "pause", "target": "procs"},
                    {"type": "pause", "target": "procs"},
                ],
                "steady_state": [{"name": "e", "of": "error_rate"}, {"name": "e", "of": "latency"}],
            },
            "used twice",
        ),
        ({"load": None}, "add a 'load:' section"),
        ({"hypothesis": {"recover_within": "1m"}}, "longer than the recovery phase"),
        ({"safety": {"max_duration": "1m"}}, "beyond max_duration"),
        (
            {"safety": {"abort_when": [{"metric": "errors", "above": "1s"}]}},
            "must be a percentage",
        ),
        ({"safety": {"abort_when": [{"metric": "nope", "above": 1}]}}, "no steady-state metric"),
        ({"hypothesis": {"comparison": "concurrent"}}, "needs blast_radius.control"),
        ({"load": {"url": "http://x:${ports.nope}/", "rate": "1/s"}}, "names no port"),
    ],
)
def test_fields_must_fit_together(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(InconsistentExperiment, match=match):
        exp(**changes)


def test_disk_full_and_clock_skew_need_prepared_targets() -> None:
    plain = copy.deepcopy(BASE)
    plain["system"] = {"stack": {"replicas": 2}}
    plain["faults"] = [
        {"type": "disk_full", "target": "procs", "leave": "0B"},
        {"type": "clock_skew", "target": "procs", "skew": "+1m"},
    ]
    with pytest.raises(InconsistentExperiment) as info:
        Experiment.model_validate(plain)
    messages = [p.message for p in info.value.problems]
    assert sum("needs a 'tmpfs' on 'backend-" in m for m in messages) == 2
    assert sum("needs 'faketime: true' on 'backend-" in m for m in messages) == 2


def test_a_network_fault_on_a_process_needs_a_listen_port_of_the_system() -> None:
    latency = [{"type": "latency", "target": "procs", "latency": "100ms"}]
    with pytest.raises(InconsistentExperiment, match="give 'listen'") as info:
        exp(faults=latency)
    assert info.value.problems[0].path == ("targets", "procs", "listen")
    system = {"stack": {"replicas": 2}, "ports": ["front", "api"]}
    fronted = {"kind": "process", "select": "backend-1", "port": 8080, "listen": "front"}
    ok = exp(system=system, targets={"procs": fronted}, faults=latency)
    assert ok.targets["procs"].kind == "process"
    named = {**fronted, "port": "api"}
    assert exp(system=system, targets={"procs": named}, faults=latency).targets["procs"]
    for target, match in [
        ({**fronted, "listen": "elsewhere"}, "'elsewhere' is not one of system.ports"),
        ({**fronted, "listen": "frontend"}, "'frontend' is not one of system.ports"),
        ({**fronted, "port": "nope"}, "'nope' names no port of the system"),
    ]:
        with pytest.raises(InconsistentExperiment, match=match):
            exp(system=system, targets={"procs": target}, faults=latency)
    portless = {"kind": "process", "select": "backend-1", "listen": "front"}
    with pytest.raises(InconsistentExperiment, match="give the 'port' it relays to"):
        exp(
            system=system,
            targets={"procs": portless},
            faults=[{"type": "pause", "target": "procs"}],
        )
    twice = {"a": fronted, "b": {**fronted, "listen": {"backend-2": "front"}}}
    with pytest.raises(InconsistentExperiment, match="already the listen port of target 'a'"):
        exp(system=system, targets=twice, faults=latency)


def test_explicit_pids_only_for_crash_and_pause() -> None:
    targets = {"pid": {"kind": "process", "pids": [4242]}}
    ok = exp(targets=targets, faults=[{"type": "pause", "target": "pid"}])
    assert ok.targets["pid"].kind == "process"
    with pytest.raises(
        InconsistentExperiment, match="names pids, which only faults that need nothing"
    ):
        exp(targets=targets, faults=[{"type": "clock_skew", "target": "pid", "skew": "1m"}])


def test_commands_are_argv_lists_never_shell_strings() -> None:
    system = {"processes": [{"name": "api", "command": "python -m http.server"}]}
    with pytest.raises(ValidationError, match="not a shell string"):
        exp(system=system)


def test_threshold_units_follow_the_metric() -> None:
    e = exp(
        steady_state=[
            {"name": "lat", "of": "latency"},
            {"name": "tp", "of": "throughput"},
            {"name": "errors", "of": "error_rate"},
        ],
        safety={
            "abort_when": [
                {"metric": "lat", "above": "1500ms"},
                {"metric": "tp", "below": "5/s"},
                {"metric": "errors", "above": "50%", "for": "3s"},
            ]
        },
    )
    assert [str(c.limit) for c in e.safety.abort_when] == ["1.5s", "5/s", "50%"]


PROBE = {"type": "command", "command": ["true"]}


@pytest.mark.parametrize(
    ("metric", "condition", "field", "words"),
    [
        ({"of": "latency"}, {"above": "2s"}, "above", "latency never reads above 2s"),
        ({"of": "latency"}, {"above": "5s"}, "above", "raise load.timeout"),
        ({"of": "error_rate"}, {"above": "100%"}, "above", "never above 100%"),
        ({"of": "error_rate"}, {"below": "0%"}, "below", "never below 0%"),
        ({"of": "throughput"}, {"below": "20/s"}, "below", "always below 20/s"),
        ({"of": "error_rate"}, {"above": "5%", "for": "2m"}, "for", "as long as the whole run"),
        (
            {"of": "probe", "probe": PROBE, "interval": "5s"},
            {"above": 1, "for": "2s"},
            "for",
            "never seen lasting",
        ),
        (
            {"of": "error_rate"},
            {"above": "5%", "group": "control"},
            "group",
            "needs blast_radius.control: concurrent",
        ),
    ],
)
def test_an_abort_condition_that_can_never_fire_is_refused(
    metric: dict[str, Any], condition: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InconsistentExperiment) as caught:
        exp(
            steady_state=[{"name": "m", **metric}],
            safety={"abort_when": [{"metric": "m", **condition}]},
            phases={"warmup": "0s", "baseline": "30s", "fault": "30s", "recovery": "30s"},
        )
    [problem] = caught.value.problems
    assert problem.path == ("safety", "abort_when", 0, field)
    assert words in problem.message


def test_a_control_group_condition_needs_the_group_header() -> None:
    with pytest.raises(InconsistentExperiment, match=r"load\.group_header, which is not set"):
        exp(
            blast_radius={"count": 1, "control": "concurrent"},
            safety={"abort_when": [{"metric": "errors", "above": "5%", "group": "control"}]},
        )
    header = {"url": "http://127.0.0.1:${ports.frontend}/", "rate": "10/s", "group_header": "X-B"}
    assert exp(
        load=header,
        blast_radius={"count": 1, "control": "concurrent"},
        safety={"abort_when": [{"metric": "errors", "above": "5%", "group": "control"}]},
    )


def test_a_recovery_must_be_possible_to_confirm() -> None:
    assert exp(hypothesis={"recover_within": "28s"}).recovery_hold() == Duration.parse("2s")
    assert exp().recovery_hold() == Duration.parse("3s")
    assert exp(phases={"recovery": "1s"}).recovery_hold() == Duration.parse("1s")
    with pytest.raises(InconsistentExperiment, match="leaves nothing of the recovery phase"):
        exp(hypothesis={"recover_within": "30s"})  # the whole 30 s recovery phase
    with pytest.raises(InconsistentExperiment, match=r"hold \(10s\) add up to 10s"):
        exp(phases={"recovery": "5s"}, hypothesis={"hold": "10s"})
    with pytest.raises(InconsistentExperiment, match=r"and hold \(3s\) add up to 31s"):
        exp(hypothesis={"recover_within": "28s", "hold": "3s"})
    with pytest.raises(InconsistentExperiment, match="needs a recovery phase"):
        exp(phases={"recovery": "0s"}, hypothesis={"recover_within": "1s"})
    assert exp(phases={"recovery": "0s"})  # no recovery phase: recovery is not judged


def test_a_recovery_phase_under_a_second_holds_no_window() -> None:
    with pytest.raises(InconsistentExperiment, match=r"holds none; give phases\.recovery at least"):
        exp(phases={"recovery": "500ms"})


def test_a_latency_slo_at_or_above_the_timeout_can_never_be_broken() -> None:
    with pytest.raises(InconsistentExperiment, match=r"steady_state\[0\]\.max: latency never"):
        exp(steady_state=[{"name": "p95", "of": "latency", "quantile": 0.95, "max": "2s"}])
    assert exp(steady_state=[{"name": "p95", "of": "latency", "quantile": 0.95, "max": "1s"}])


@pytest.mark.parametrize("field", ["max", "margin"])
def test_an_error_rate_limit_of_every_request_is_refused(field: str) -> None:
    with pytest.raises(ValidationError, match="below 100%"):
        exp(steady_state=[{"name": "errors", "of": "error_rate", field: "100%"}])
    assert exp(steady_state=[{"name": "errors", "of": "error_rate", field: "99%"}])


def test_an_empty_port_mapping_is_refused() -> None:
    targets = {"webs": {"kind": "process", "select": "web-*", "port": {}, "listen": "f"}}
    with pytest.raises(ValidationError, match="maps none"):
        exp(targets=targets, system={"ports": ["f"]})


def test_every_fault_type_names_a_driver_for_each_kind_it_takes() -> None:
    """A fault describes how it is applied (``DRIVERS``, ``on_proxy``): declared on any kind
    it takes, some driver applies it there, so no runner code lists fault types."""
    union, _ = get_args(Fault)
    for model in get_args(union):
        assert set(model.DRIVERS.values()) <= set(BUILTIN_DRIVERS), model.__name__
        assert {"tmpfs", "faketime"} >= model.LAUNCH_NEEDS, model.__name__
        for kind in model.KINDS - {"host"}:  # a host's faults go to what runs there: below
            proxied = set(model.DRIVERS) == {"proxy"} or (
                model.__name__ == "PartitionFault" and kind != "container"
            )
            assert model.DRIVERS.get("proxy" if proxied else kind), (model.__name__, kind)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "latency", "latency": "20ms"}, {"proxy": "toxiproxy"}),
        ({"type": "partition"}, {"proxy": "toxiproxy"}),
        ({"type": "partition", "mode": "refuse"}, {"proxy": "toxiproxy"}),
        ({"type": "partition", "mode": "disconnect"}, {"container": "docker"}),
        (
            {"type": "host_down", "mode": "freeze"},
            {"proxy": "toxiproxy", "process": "process", "container": "docker"},
        ),
        ({"type": "host_down"}, {"proxy": "toxiproxy", "container": "docker"}),
    ],
)
def test_a_fault_on_a_host_reaches_each_thing_there_through_its_driver(
    fields: dict[str, str], expected: dict[str, str]
) -> None:
    """A fault on a host becomes, for each thing running there, a fault some driver applies
    to a thing of that kind; things it cannot bring back are refused, not skipped."""
    fault = TypeAdapter(Fault).validate_python({**fields, "target": "h"})
    assert "host" in fault.KINDS
    reached = {}
    for kind in ("proxy", "process", "container"):
        try:
            hit = fault.on_host(kind)
        except ValueError as error:
            assert (fields, kind) == ({"type": "host_down"}, "process")
            assert "use mode 'freeze'" in str(error)
            continue
        if hit is not None:
            driver = hit.driver(kind)
            assert driver is not None, (fields, kind)
            reached[kind] = driver
    assert reached == expected


def test_the_built_in_fault_types_are_one_list_in_three_spellings() -> None:
    """model/faults.py spells the built-in fault types three times (the union and the
    ``FaultType`` literal for the type checker, ``BUILTIN_FAULTS`` for plugins to join):
    they must agree, or a new type would be half added."""
    from chaoskit.model import faults

    union, _ = get_args(faults.Fault)
    assert get_args(union) == faults.BUILTIN_FAULTS
    assert get_args(faults.FaultType) == tuple(faults.fault_types())


@pytest.mark.parametrize(
    ("system", "match"),
    [
        ({"engines": [{"name": "a", "host": "10.0.0.2:2376"}]}, "should match pattern"),
        (
            {"engines": [{"name": "a", "host": "unix:///d.sock", "tls": {"ca": "/ca.pem"}}]},
            "'tls' is for a tcp:// engine",
        ),
        (
            {"engines": [{"name": "a", "host": "tcp://h:2376", "tls": {"cert": "/c.pem"}}]},
            "needs both 'cert' and 'key'",
        ),
        (
            {"engines": [{"name": "a", "host": "tcp://h:1"}, {"name": "a", "host": "tcp://h:2"}]},
            "names in system.engines must be unique: a",
        ),
        (
            {"toxiproxies": [{"name": "e", "url": "http://h:1"}, {"name": "e", "url": "http://h:2"}]},
            "names in system.toxiproxies must be unique: e",
        ),
        (
            {"engines": [{"name": "a", "host": "tcp://h:1"}],
             "containers": [{"name": "c", "image": "i", "engine": "b"}]},
            r"system.containers\[0\] \('c'\) is for engine 'b', which system.engines does not "
            r"name \(named: a\)",
        ),
        (
            {"services": [{"name": "web", "image": "i", "engine": "sw"}]},
            r"system.services\[0\] \('web'\) is for engine 'sw', which system.engines does "
            r"not name \(named: none: add it to system.engines\)",
        ),
        (
            {"services": [{"name": "web", "image": "i", "ports": [
                {"target": 80, "published": 8080}, {"target": 81, "published": 8080}]}]},
            "each port is published once: 8080",
        ),
        (
            {"containers": [{"name": "web", "image": "i"}],
             "services": [{"name": "web", "image": "i"}]},
            "process, container and service names must be unique: web",
        ),
    ],
)  # fmt: skip
def test_engines_and_toxiproxy_servers_say_what_is_wrong(
    system: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        exp(system=system)


def test_named_engines_and_servers_are_accepted_with_their_selectors() -> None:
    experiment = exp(
        system={
            "engines": [
                {"name": "east", "host": "tcp://10.0.0.2:2376", "labels": {"zone": "a"},
                 "tls": {"ca": "ca.pem", "cert": "c.pem", "key": "k.pem"}},
                {"name": "west", "host": "ssh://ops@10.0.0.3"},
            ],
            "toxiproxies": [{"name": "edge", "url": "http://10.0.0.2:8474"}],
            "ports": ["frontend"],
        },
        targets={
            "boxes": {"kind": "container", "select": "api-*", "engine": ["east"]},
            "proxies": {"kind": "proxy", "select": "backend-*", "server": "edge",
                        "labels": {"zone": "a"}},
        },
    )  # fmt: skip
    boxes, proxies = experiment.targets["boxes"], experiment.targets["proxies"]
    assert boxes.selects("east/api-1", {}) and not boxes.selects("west/api-1", {})
    assert proxies.selects("edge/backend-1", {"zone": "a"})
    assert not proxies.selects("backend-1", {"zone": "a"})  # the unnamed server is not 'edge'


@pytest.mark.parametrize(
    "radius", [{"count": 2, "spread": "host"}, {"count": 2, "max_per_host": 1}]
)
def test_a_spread_the_declared_targets_cannot_give_is_refused_before_the_run(
    radius: dict[str, Any],
) -> None:
    """The stack's proxies are all on this machine (no host label): one host, so at most one
    of them per host."""
    with pytest.raises(InconsistentExperiment, match=r"on too few hosts or zones .* at most 1"):
        exp(blast_radius=radius)
    exp(blast_radius={**radius, "count": 1})


@pytest.mark.parametrize(
    ("host", "said"),
    [("tcp://127.0.0.1:notaport", "is not a Docker host"), ("tcp://:2376", "names no machine")],
)
def test_an_engine_host_that_cannot_be_reached_as_written_is_refused(host: str, said: str) -> None:
    with pytest.raises(ValidationError, match=said):
        exp(system={"engines": [{"name": "a", "host": host}]})
