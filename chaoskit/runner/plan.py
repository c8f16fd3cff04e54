"""Before anything is touched: targets drawn, each fault's records made, every API reachable.

Whatever is wrong here refuses the run (:class:`PreflightError`) with nothing applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..drivers.base import AppliedFault, DriverError, Target
from ..model import Experiment, Fault
from ..safety.policy import Policy
from .errors import PreflightError
from .fronts import Fronts
from .lifecycle import FaultLifecycle
from .system import RunningSystem
from .targets import (
    Draw,
    TargetError,
    check_draw,
    check_places,
    draw,
    host_members,
    hosts,
    select,
)

__all__ = ["PlannedFault", "PreflightError", "check_planned", "plan_faults"]


@dataclass
class PlannedFault:
    """One ``faults`` entry: its records (one per drawn target) and when in the phase it runs."""

    fault: Fault
    index: int
    records: list[AppliedFault]
    start: float
    """Seconds into the fault phase."""
    end: float
    on_host: dict[str, Fault] = field(default_factory=dict)
    """For a fault on a host: what it became for each record's target (by record id)."""

    def fault_of(self, record: AppliedFault) -> Fault:
        """The fault ``record`` is planned from (again, each trial): the declared one, or, on
        a host, what it becomes for the thing the record is on."""
        return self.on_host.get(record.id, self.fault)


def plan_faults(
    experiment: Experiment,
    policy: Policy,
    live: RunningSystem,
    fronts: Fronts,
    faults: FaultLifecycle,
) -> tuple[list[PlannedFault], dict[str, Draw]]:
    """Draw each target key's experiment group once (seeded, checked against the policy) and
    plan every fault on every drawn target; network faults on non-proxies go to their front."""
    try:
        available = live.targets()
    except TargetError as error:
        raise PreflightError(str(error)) from None
    if any(spec.kind == "host" for spec in experiment.targets.values()):
        available += hosts(available, live.run_id)
    draws: dict[str, Draw] = {}
    planned: list[PlannedFault] = []
    fault_phase = experiment.phases.fault.nanoseconds / 1e9
    for index, fault in enumerate(experiment.faults):
        key = fault.target
        if key not in draws:
            try:
                candidates = select(key, experiment.targets[key], available)
                drawn = draw(candidates, experiment.blast_radius)
            except TargetError as error:
                raise PreflightError(str(error)) from None
            problems = check_draw(policy, key, drawn, len(candidates))
            if problems:
                raise PreflightError("; ".join(str(p) for p in problems))
            draws[key] = drawn
        records, on_host = [], {}
        for member in draws[key].experiment:
            if member.kind == "host":
                for record, hit in _on_host(index, fault, member, policy, faults):
                    records.append(record)
                    on_host[record.id] = hit
                continue
            target: Target | None = member
            if member.kind != "proxy" and fault.on_proxy:
                target = fronts.of(key, member)  # placed for each one at bring-up
            if target is None:
                raise PreflightError(
                    f"faults[{index}] goes through a proxy before {member.name}, and none was "
                    f"placed: give targets.{key}.listen"
                )
            try:
                records.append(faults.plan(fault, target))
            except DriverError as error:
                raise PreflightError(f"faults[{index}] on {target.name}: {error}") from None
        start = fault.at.nanoseconds / 1e9
        end = start + fault.duration.nanoseconds / 1e9 if fault.duration else fault_phase
        planned.append(PlannedFault(fault, index, records, start, min(end, fault_phase), on_host))
    problems = check_places(policy, draws)
    if problems:
        raise PreflightError("; ".join(str(p) for p in problems))
    return planned, draws


def _on_host(
    index: int, fault: Fault, host: Target, policy: Policy, faults: FaultLifecycle
) -> list[tuple[AppliedFault, Fault]]:
    """The records of a fault on ``host``, each with the fault it was planned from: one for
    each thing running there that the fault reaches (:meth:`model.FaultBase.on_host`), each of
    a kind the policy allows."""
    records, there = [], host_members(host)
    for member in there:
        try:
            hit = fault.on_host(member.kind)
        except ValueError as error:
            raise PreflightError(f"faults[{index}] on host {host.name}: {error}") from None
        if hit is None:
            continue
        if member.kind not in policy.allowed_target_kinds:
            raise PreflightError(
                f"faults[{index}] on host {host.name} would hit {member.kind} {member.name}, "
                f"and {member.kind} targets are not allowed here (allowed: "
                f"{', '.join(policy.allowed_target_kinds)})"
            )
        try:
            records.append((faults.plan(hit, member), hit))
        except DriverError as error:
            raise PreflightError(f"faults[{index}] on {member.name}: {error}") from None
    if not records:
        runs = ", ".join(f"{t.kind} {t.name}" for t in there)
        raise PreflightError(
            f"faults[{index}] ({fault.type}) reaches nothing on host {host.name}, which runs {runs}"
        )
    return records


async def check_planned(planned: list[PlannedFault], faults: FaultLifecycle) -> None:
    """Every backend a planned fault needs answers now and each fault can be applied and taken
    back as planned (a Toxiproxy proxy exists; one a refuse partition disables is enabled): all
    before any fault is applied."""
    try:
        await faults.check(r for p in planned for r in p.records)
    except DriverError as error:
        raise PreflightError(str(error)) from None
