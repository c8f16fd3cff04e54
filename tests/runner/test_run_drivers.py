"""A whole run with its drivers given (``run_experiment(drivers=...)``): the real Toxiproxy driver
wrapped so that every call is seen, on a real web server behind the proxy chaoskit places in
front of it. Each fault is checked before it is applied, reverted once, and the run's journal
saw it before the driver applied it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import ClassVar, Self

from web_experiment import web_experiment

from chaoskit.drivers.base import AppliedFault, DriverConfig, Target
from chaoskit.drivers.registry import BUILTIN_DRIVERS
from chaoskit.drivers.toxiproxy import ToxiproxyDriver
from chaoskit.loader import load_experiment
from chaoskit.model import Fault
from chaoskit.runner.run import run_experiment
from chaoskit.safety.policy import Policy


class _Seen(ToxiproxyDriver):
    """The real driver, each call written down (and, at apply, what the journal held)."""

    calls: ClassVar[list[tuple[str, str]]] = []
    journal: ClassVar[Path | None] = None

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        return cls(config.toxiproxy_url)

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        record = super().plan(fault, target)
        _Seen.calls.append(("plan", record.id))
        return record

    async def check(self, record: AppliedFault) -> None:
        _Seen.calls.append(("check", record.id))
        await super().check(record)

    async def apply(self, record: AppliedFault) -> None:
        journals = list(_Seen.journal.glob("*/journal.jsonl")) if _Seen.journal else []
        journaled = any(record.id in path.read_text() for path in journals)
        _Seen.calls.append(("apply" if journaled else "apply-unjournaled", record.id))
        await super().apply(record)

    async def revert(self, record: AppliedFault) -> None:
        _Seen.calls.append(("revert", record.id))
        await super().revert(record)


def test_a_run_uses_the_drivers_it_is_given_through_the_one_lifecycle(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(web_experiment("given-drivers", tmp_path, rate="20/s"))
    reports = tmp_path / "reports"
    _Seen.journal = reports
    table = {**BUILTIN_DRIVERS, "toxiproxy": f"{__name__}:_Seen.from_config"}
    outcome = asyncio.run(
        run_experiment(
            load_experiment(path), policy=Policy(), reports=reports, log=lambda _: None,
            drivers=table,
        )
    )  # fmt: skip
    assert outcome.verdict == "deviated", outcome.result.error  # 250 ms on a fast server
    kinds = [kind for kind, _ in _Seen.calls]
    # Planned at preflight and again at injection (the target as it is then), checked once
    # before anything is applied, applied once the journal holds it, reverted once.
    assert kinds.count("check") == 1 and kinds.index("check") < kinds.index("apply"), kinds
    assert "apply-unjournaled" not in kinds and kinds.count("apply") == 1, kinds
    applied = next(record for kind, record in _Seen.calls if kind == "apply")
    assert ("revert", applied) in _Seen.calls and kinds.count("revert") == 1, kinds
    [journal] = reports.glob("*/journal.jsonl")
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert events[-1] == "close" and events.count("revert") == 1
