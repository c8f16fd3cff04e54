"""Selectors to concrete targets, and the blast radius: which targets are hit, which are the
control group, drawn with a seeded generator whose seed is recorded."""

from __future__ import annotations

import random
import secrets
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..drivers.base import DriverError, Target
from ..drivers.engines import ENVIRONMENT, Engine
from ..drivers.process import describe, process_target
from ..model import BlastRadius, TargetSpec
from ..model.system import ProcessTarget
from ..safety.policy import Policy, Violation
from .system.parts import RUN_LABEL

__all__ = [
    "Draw",
    "TargetError",
    "check_draw",
    "check_places",
    "draw",
    "engine_containers",
    "host_members",
    "hosts",
    "known_as",
    "place",
    "places",
    "select",
    "swarm_targets",
]


class TargetError(Exception):
    """A selector that matches nothing, or a draw that cannot be made; nothing was touched."""


def engine_containers(engines: Sequence[Engine] = ()) -> list[Target]:
    """The containers running on each of ``engines`` (none: the environment's engine), as
    targets; on named engines they are called ``ENGINE/CONTAINER``."""
    import docker.errors  # noqa: PLC0415 - only for container targets

    from ..drivers.docker import container_target  # noqa: PLC0415

    found = []
    for engine in engines or [ENVIRONMENT]:
        try:
            client = engine.client()
        except DriverError as error:
            raise TargetError(f"container targets: {error}") from None
        try:
            listed = client.containers.list()
        except docker.errors.DockerException as error:
            raise TargetError(
                f"cannot list the containers of {engine.described()}: {error}"
            ) from None
        finally:
            client.close()
        found += [container_target(engine, c, named=bool(engines)) for c in listed]
    return found


def hosts(available: Iterable[Target], run_id: str | None) -> list[Target]:
    """The hosts ``available`` targets name in their ``host`` label, as ``host`` targets: each
    labelled with its name and with every label all that run there share (its ``zone``), its
    ref listing what runs there (:func:`host_members`). A target without the label is on this
    machine, which is no host target: it is where chaoskit itself runs. ``run_id``: the run
    whose containers count as its own (None: any container chaoskit started)."""
    members: dict[str, list[Target]] = {}
    for target in available:
        host = target.labels.get("host")
        if host and _runs_there(target, run_id):
            members.setdefault(host, []).append(target)
    found = []
    for host, there in sorted(members.items()):
        shared = dict(there[0].labels)
        for target in there[1:]:
            shared = {k: v for k, v in shared.items() if target.labels.get(k) == v}
        shared.pop(RUN_LABEL, None)
        ref = {"members": [t.to_json() for t in sorted(there, key=lambda t: (t.kind, t.name))]}
        found.append(Target("host", host, {**shared, "host": host}, ref))
    return found


def _runs_there(target: Target, run_id: str | None) -> bool:
    """What a host fault hits on a host: every proxy of its servers and every process the
    run started there; of containers, only those the run started (an engine's other
    containers are not chaoskit's to take down)."""
    if target.kind in ("proxy", "process"):
        return True
    run = target.labels.get(RUN_LABEL)
    return target.kind == "container" and run is not None and run_id in (None, run)


def host_members(host: Target) -> list[Target]:
    """What runs on ``host`` (a target :func:`hosts` made)."""
    return [Target.from_json(t) for t in host.ref["members"]]


def swarm_targets(kind: str, engines: Sequence[Engine] = ()) -> list[Target]:
    """The running tasks of the swarm's services (``kind`` ``service``) or its nodes
    (``node``), through ``engines`` (none: the environment's engine)."""
    from ..drivers.swarm import service_tasks, swarm_nodes  # noqa: PLC0415 - swarm runs only

    try:
        return service_tasks(engines) if kind == "service" else swarm_nodes(engines)
    except DriverError as error:
        raise TargetError(f"{kind} targets: {error}") from None


def _by_pid(key: str, pids: list[int], available: Iterable[Target]) -> list[Target]:
    """The processes given by pid: as the run knows them, else as they run now."""
    known = {int(t.ref["pid"]): t for t in available if t.kind == "process"}
    found = []
    for pid in pids:
        try:
            found.append(known[pid] if pid in known else process_target(pid))
        except DriverError:
            raise TargetError(f"target '{key}' names pid {pid}, but no such process runs") from None
    return sorted(found, key=lambda t: t.name)


def select(key: str, spec: TargetSpec, available: Iterable[Target]) -> list[Target]:
    """The targets of ``available`` that ``spec`` selects (kind, any name pattern, all labels);
    a process target with ``pids`` selects exactly those processes."""
    if isinstance(spec, ProcessTarget) and spec.pids:
        return _by_pid(key, spec.pids, available)
    patterns = spec.patterns()
    chosen = [t for t in available if t.kind == spec.kind and spec.selects(t.name, t.labels)]
    if not chosen:
        wanted = ", ".join(patterns) or ", ".join(f"{k}={v}" for k, v in spec.labels.items())
        names = sorted(t.name for t in available if t.kind == spec.kind)
        known = ", ".join(names) if names else f"no {spec.kind} targets at all"
        raise TargetError(f"target '{key}' ({spec.kind} {wanted}) matches nothing; found: {known}")
    return sorted(chosen, key=lambda t: t.name)


@dataclass(frozen=True)
class Draw:
    """The outcome of the blast-radius draw, for the result file."""

    experiment: list[Target]
    control: list[Target]
    seed: int

    def to_json(self) -> dict[str, object]:
        """Names and the seed: enough to repeat the draw."""
        return {
            "seed": self.seed,
            "experiment": [t.name for t in self.experiment],
            "control": [t.name for t in self.control],
        }


def draw(candidates: list[Target], radius: BlastRadius) -> Draw:
    """Pick the experiment group; the rest is the control group (when it is ``concurrent``)."""
    if not candidates:
        raise TargetError("no targets to draw from")
    total = len(candidates)
    size = radius.size(total)
    if size > total:
        raise TargetError(f"blast_radius.count is {size}, but only {total} target(s) matched")
    if radius.control == "concurrent" and size >= total:
        raise TargetError(
            f"a concurrent control group needs a target left over, but all {total} would be hit: "
            "lower blast_radius.count or fraction"
        )
    seed = radius.seed if radius.seed is not None else secrets.randbits(32)
    ordered = sorted(candidates, key=lambda t: t.name)
    if radius.spread is None and radius.max_per_host is None:
        hit = random.Random(seed).sample(ordered, size)
    else:
        hit = _spread(random.Random(seed).sample(ordered, total), size, radius)
    chosen = {t.name for t in hit}
    rest = [t for t in ordered if t.name not in chosen]
    control = rest if radius.control == "concurrent" else []
    return Draw(sorted(hit, key=lambda t: t.name), control, seed)


def place(target: Target, label: str) -> str:
    """The host (or zone) a target is on, by its ``label``: ``this machine`` without one."""
    return target.labels.get(label) or "this machine"


def places(target: Target, label: str) -> set[str]:
    """Every host (or zone) hitting ``target`` reaches: a host's are those of all it runs
    (its members may stand in several zones)."""
    if target.kind == "host":
        return {place(m, label) for m in host_members(target)}
    return {place(target, label)}


_SEARCH = 200_000
"""Steps the search for a spread draw may take before it gives up (and says so)."""


def _spread(shuffled: list[Target], size: int, radius: BlastRadius) -> list[Target]:
    """The first ``size`` targets of ``shuffled``, in its order, that keep to ``spread`` and
    ``max_per_host`` together: a depth-first search that prefers earlier targets, so the draw
    stays the seed's. Taking each target that fits (greedy) can miss a draw that exists when
    zones and a per-host cap pull apart."""
    hosts = [place(t, "host") for t in shuffled]
    spreads = [place(t, radius.spread) if radius.spread else "" for t in shuffled]
    cap = radius.max_per_host
    on_host: Counter[str] = Counter()
    taken: set[str] = set()
    chosen: list[int] = []
    steps = 0

    def fits(i: int) -> bool:
        if cap is not None and on_host[hosts[i]] >= cap:
            return False
        return radius.spread is None or spreads[i] not in taken

    def search(start: int) -> bool:
        nonlocal steps
        if len(chosen) == size:
            return True
        for i in range(start, len(shuffled) - (size - len(chosen)) + 1):
            steps += 1
            if steps > _SEARCH:
                return False
            if not fits(i):
                continue
            chosen.append(i)
            on_host[hosts[i]] += 1
            if radius.spread is not None:
                taken.add(spreads[i])
            if search(i + 1):
                return True
            chosen.pop()
            on_host[hosts[i]] -= 1
            taken.discard(spreads[i])
        return False

    if search(0):
        return [shuffled[i] for i in chosen]
    rules = []
    if radius.spread is not None:
        rules.append(f"spread: {radius.spread} (one per {radius.spread})")
    if cap is not None:
        rules.append(f"max_per_host: {cap}")
    label = radius.spread or "host"
    places = Counter(place(t, label) for t in shuffled)
    found = ", ".join(f"{name} ({n})" for name, n in sorted(places.items()))
    why = "no draw that large keeps to them" if steps <= _SEARCH else "none was found in time"
    raise TargetError(
        f"blast_radius asks for {size} of {len(shuffled)} targets with {' and '.join(rules)}, "
        f"but {why}: by {label}, they are on {found}; lower blast_radius.count or fraction, "
        "or select targets on more of them"
    )


def check_places(policy: Policy, draws: Mapping[str, Draw]) -> list[Violation]:
    """The policy's caps on how many hosts and zones a run's experiment groups (all together)
    may be on."""
    found = []
    cap = policy.max_blast_radius
    for label, most in (("host", cap.hosts), ("zone", cap.zones)):
        hit = sorted({p for d in draws.values() for t in d.experiment for p in places(t, label)})
        if most is not None and len(hit) > most:
            found.append(
                Violation(
                    ("blast_radius",),
                    f"max_blast_radius.{label}s",
                    f"the run would hit targets on {len(hit)} {label}s ({', '.join(hit)}), "
                    f"more than the {most} allowed",
                )
            )
    return found


COMPOSE_SERVICE = "com.docker.compose.service"
"""The label Docker Compose gives a container: the name of its service."""


def known_as(target: Target) -> tuple[list[str], str]:
    """Every name a person could call ``target`` by, which a protected ``select`` is matched
    against, and the target in words for a refusal. A process: chaoskit's name for it, its own
    name, its executable (basename and path), ``argv[0]``'s basename and its whole command line,
    read from ``/proc`` now. A container: its name with and without Docker's leading ``/`` and
    its compose service; on a named engine, without the engine's prefix too. A Swarm task: its
    name with and without the engine's prefix, and its service's name. A node: its hostname,
    with and without the engine's prefix. A proxy: its name, and without a named server's
    prefix."""
    names, said = [target.name], f"'{target.name}'"
    if target.kind == "proxy":
        names.append(target.name.rpartition("/")[2])
    if target.kind == "process" and "pid" in target.ref:
        pid = int(target.ref["pid"])
        start = target.ref.get("start")
        found = describe(pid, None if start is None else int(start))
        said = f"'{target.name}' (pid {pid}"
        if found is not None:
            names += found.names()
            said += f", process {found.comm}"
            if found.cmdline:
                said += f", command line '{' '.join(found.cmdline)}'"
        said += ")"
    elif target.kind == "container":
        bare = target.name.rpartition("/")[2]  # a named engine's prefix, or Docker's leading /
        names += [bare, f"/{bare}"]
        service = target.labels.get(COMPOSE_SERVICE)
        if service:
            names.append(service)
            said += f" (compose service {service})"
    elif target.kind == "service":  # a Swarm task: by its service too
        names += [target.name.rpartition("/")[2], str(target.ref.get("service", ""))]
        said += f" (a task of service {target.ref.get('service')})"
    elif target.kind == "node":
        names.append(target.name.rpartition("/")[2])
    return [n for n in dict.fromkeys(names) if n], said


def check_draw(policy: Policy, key: str, drawn: Draw, total: int) -> list[Violation]:
    """Policy rules on the concrete draw: protected targets (by every name each goes by, see
    :func:`known_as`, and labels; a host is protected when anything running there is) and the
    blast-radius caps."""
    found = []
    hit_targets = [(t, "") for t in drawn.experiment]
    for host in (t for t in drawn.experiment if t.kind == "host"):
        hit_targets += [(t, f"host {host.name} runs ") for t in host_members(host)]
    for target, on_host in hit_targets:
        names, said = known_as(target)
        for entry in policy.protected:
            matched = entry.matching(target.kind, names, target.labels)
            if matched is None:
                continue
            rule = f"'{entry.select}'" if entry.select else ""
            if entry.labels:
                pairs = ", ".join(f"{k}={v}" for k, v in entry.labels.items())
                rule += f"{' with ' if rule else ''}labels {pairs}"
            hit = f" as '{matched}'" if matched and matched != target.name else ""
            why = f": {entry.reason}" if entry.reason else ""
            found.append(
                Violation(
                    ("targets", key),
                    "protected",
                    f"{on_host}{target.kind} {said}, which is protected by {rule}{hit}{why}"
                    if on_host
                    else f"{target.kind} {said} is protected by {rule}{hit}{why}",
                )
            )
            break
    cap = policy.max_blast_radius
    size = len(drawn.experiment)
    breaches = cap.breaches(size, total)
    reached = sum(len(host_members(t)) if t.kind == "host" else 1 for t in drawn.experiment)
    if "count" in breaches:
        found.append(
            Violation(
                ("blast_radius",),
                "max_blast_radius.count",
                f"{size} targets would be hit, more than the {cap.count} allowed",
            )
        )
    elif cap.count is not None and reached > cap.count:
        found.append(
            Violation(
                ("blast_radius",),
                "max_blast_radius.count",
                f"the {size} host(s) drawn run {reached} things a fault there would hit, "
                f"more than the {cap.count} targets allowed",
            )
        )
    if "fraction" in breaches:
        share = size / total
        found.append(
            Violation(
                ("blast_radius",),
                "max_blast_radius.fraction",
                f"{size} of {total} targets ({share:.0%}) would be hit, more "
                f"than the {cap.fraction:.0%} allowed",
            )
        )
    return found
