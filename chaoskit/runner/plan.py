"""Before anything is touched: targets drawn, each fault's records made, every API reachable.

Whatever is wrong here refuses the run (:class:`PreflightError`) with nothing applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..drivers.base import AppliedFault, DriverError
from ..model import Experiment, Fault, through_proxy
from ..safety.policy import Policy
from .fronts import Fronts
from .rollback import Drivers, driver_for
from .system import RunningSystem
from .targets import Draw, TargetError, check_draw, draw, select

__all__ = ["PlannedFault", "PreflightError", "check_reachable", "plan_faults"]


class PreflightError(Exception):
    """The run was refused before anything was touched; the message says why."""


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
    drivers: Drivers,
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
            target = member
            if member.kind != "proxy" and through_proxy(fault):
                front = fronts.of(key, member)  # placed for each one at bring-up
                assert front is not None
                target = front
            name = driver_for(fault, target)
            try:
                records.append(drivers.get(name).plan(fault, target))
            except DriverError as error:
                raise PreflightError(f"faults[{index}] on {target.name}: {error}") from None
        start = fault.at.nanoseconds / 1e9
        end = start + fault.duration.nanoseconds / 1e9 if fault.duration else fault_phase
        planned.append(PlannedFault(fault, index, records, start, min(end, fault_phase)))
    return planned, draws


async def check_reachable(planned: list[PlannedFault], drivers: Drivers) -> None:
    """Every Toxiproxy API a planned fault needs answers now, its proxy exists, and a proxy a
    refuse partition will disable is enabled: all before any fault is applied."""
    from ..drivers.toxiproxy import ToxiproxyDriver  # noqa: PLC0415

    for record in (r for p in planned for r in p.records if r.driver == "toxiproxy"):
        driver = drivers.get("toxiproxy")
        assert isinstance(driver, ToxiproxyDriver)
        try:
            await driver.check(record)
        except DriverError as error:
            raise PreflightError(str(error)) from None
    # The docker driver reaches the engine when it plans (it looks the container up).
