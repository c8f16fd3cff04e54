"""The one fault lifecycle (runner/lifecycle.py) that ``chaoskit run`` and the pytest fixtures
share: journal first, a half-applied fault still taken back, a failed revert kept as applied,
and no fault planned on a kind its type has no driver for."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Self

import httpx
import pytest
from pydantic import TypeAdapter

from chaoskit.drivers.base import AppliedFault, DriverConfig, DriverError, Target, TargetGone
from chaoskit.drivers.process import process_target
from chaoskit.drivers.registry import BUILTIN_DRIVERS, Drivers
from chaoskit.drivers.toxiproxy import proxy_target
from chaoskit.model import Fault
from chaoskit.proxy import run_in_thread
from chaoskit.runner.journal import Journal, read_journal
from chaoskit.runner.lifecycle import FaultLifecycle, could_not_revert


def fault(**spec: str) -> Fault:
    return TypeAdapter(Fault).validate_python({**spec, "target": "t"})


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "300"])
    yield process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
    process.wait()


def test_a_fault_that_fails_while_applied_is_journaled_and_still_taken_back(
    tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    journal = Journal.create(tmp_path / "journal.jsonl", "run")
    faults = FaultLifecycle(Drivers(), journal)
    record = faults.plan(fault(type="pause"), process_target(victim.pid, "victim"))
    victim.kill()  # gone between planning and applying: the apply fails
    victim.wait()
    with pytest.raises(TargetGone):
        asyncio.run(faults.inject(record))
    assert [r.id for r in read_journal(journal.path).pending] == [record.id]
    assert record.id in faults.applied  # it may be half in place: it counts as applied
    outcomes = asyncio.run(faults.revert())
    assert could_not_revert(outcomes) is None
    assert not faults.applied and not read_journal(journal.path).pending


def test_a_revert_that_fails_leaves_the_fault_applied_and_named(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path / "journal.jsonl", "run")
    with run_in_thread() as server:
        body = {"name": "db", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}
        assert httpx.post(f"{server.url}/proxies", json=body, trust_env=False).status_code == 201
        faults = FaultLifecycle(Drivers(server.url), journal, patience=1.0)
        record = faults.plan(fault(type="latency", latency="1s"), proxy_target(server.url, "db"))

        async def inject() -> None:
            await faults.check([record])
            await faults.inject(record)
            await faults.aclose()

        asyncio.run(inject())
    # The API is down now: the toxic cannot be removed.
    outcomes = asyncio.run(faults.revert())
    failed = could_not_revert(outcomes)
    assert failed is not None and failed.startswith("could not revert: latency on db: ")
    assert list(faults.applied) == [record.id]
    state = read_journal(journal.path)
    assert [r.id for r in state.pending] == [record.id] and record.id in state.failures


def test_a_fault_is_planned_only_on_a_kind_its_type_has_a_driver_for() -> None:
    faults = FaultLifecycle(Drivers())
    with pytest.raises(DriverError, match="no driver applies a pause fault to a proxy target"):
        faults.plan(fault(type="pause"), proxy_target("http://127.0.0.1:9", "db"))


class _Witness:
    """A driver (as a plugin would add one) that looks at the journal when asked to apply: a
    real journal, no real backend, since the order of two writes is what is under test."""

    name = "witness"
    seen: ClassVar[list[list[str]]] = []

    def __init__(self, journal: Path) -> None:
        self.journal = journal

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        return cls(Path(str(config.toxiproxy_url)))

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        return AppliedFault(self.name, fault.type, target, {}, {})

    async def check(self, record: AppliedFault) -> None:
        pass

    async def apply(self, record: AppliedFault) -> None:
        _Witness.seen.append([r.id for r in read_journal(self.journal).pending])

    async def revert(self, record: AppliedFault) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_a_fault_is_in_the_journal_before_its_driver_applies_it(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path / "journal.jsonl", "run")
    table = {**BUILTIN_DRIVERS, "witness": f"{__name__}:_Witness.from_config"}
    faults = FaultLifecycle(Drivers(str(journal.path), table=table), journal)
    target = Target("process", "p", {}, {"pid": 1})
    record = faults.drivers.get("witness").plan(fault(type="pause"), target)
    asyncio.run(faults.inject(record))
    assert _Witness.seen == [[record.id]]


def test_an_unknown_driver_is_named_with_the_known_ones() -> None:
    with pytest.raises(DriverError, match=r"no driver called 'nope' \(known: clock, docker,"):
        Drivers().get("nope")


class _Broken(_Witness):
    """A plugin's driver with a bug of its own: its apply raises what no driver should."""

    name = "broken"

    async def apply(self, record: AppliedFault) -> None:
        raise RuntimeError("the plugin's own bug")


def test_a_plugin_driver_that_breaks_is_a_driver_error_naming_it_not_a_chaoskit_bug(
    tmp_path: Path,
) -> None:
    """Any other exception from a driver that is not chaoskit's becomes a DriverError (the run
    fails, exit 6); chaoskit's own drivers are not wrapped, so their bugs still show as bugs."""
    journal = Journal.create(tmp_path / "journal.jsonl", "run")
    table = {**BUILTIN_DRIVERS, "broken": f"{__name__}:_Broken.from_config"}
    faults = FaultLifecycle(Drivers(str(journal.path), table=table), journal)
    record = faults.drivers.get("broken").plan(fault(type="pause"), Target("process", "p"))
    with pytest.raises(DriverError, match=r"driver 'broken' failed to apply: RuntimeError: the"):
        asyncio.run(faults.inject(record))
    assert could_not_revert(asyncio.run(faults.revert())) is None  # taken back all the same
    assert type(faults.drivers.get("process")).__name__ == "ProcessDriver"
