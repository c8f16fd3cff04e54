"""Before anything is touched: targets drawn, each fault's records made, every API reachable.

Whatever is wrong here refuses the run (:class:`PreflightError`) with nothing applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..drivers.base import AppliedFault, DriverError, Target
from ..model import Experiment, Fault
from ..safety.policy import Policy
from .errors import PreflightError
from .fronts import Fronts
from .lifecycle import FaultLifecycle
from .system import RunningSystem
from .targets import Draw, TargetError, check_draw, check_places, draw, select

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
        records = []
        for member in draws[key].experiment:
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
        planned.append(PlannedFault(fault, index, records, start, min(end, fault_phase)))
    problems = check_places(policy, draws)
    if problems:
        raise PreflightError("; ".join(str(p) for p in problems))
    return planned, draws


async def check_planned(planned: list[PlannedFault], faults: FaultLifecycle) -> None:
    """Every backend a planned fault needs answers now and each fault can be applied and taken
    back as planned (a Toxiproxy proxy exists; one a refuse partition disables is enabled): all
    before any fault is applied."""
    try:
        await faults.check(r for p in planned for r in p.records)
    except DriverError as error:
        raise PreflightError(str(error)) from None
