"""The write-ahead journal, rollback from it, the watchdog, and ``chaoskit rollback``: faults on
real processes are reverted when the runner is SIGKILLed, hangs, or is gone for good."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import state_of
from pydantic import TypeAdapter
from waiting import wait_until

from chaoskit.drivers.base import AppliedFault
from chaoskit.drivers.process import ProcessDriver, process_target
from chaoskit.model import Fault
from chaoskit.runner.journal import Journal, JournalError, find_stale, read_journal
from chaoskit.runner.rollback import rollback

PAUSE = TypeAdapter(Fault).validate_python({"type": "pause", "target": "t"})


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "300"])
    yield process
    os.kill(process.pid, signal.SIGCONT)
    process.kill()
    process.wait()


def pause_into(journal: Journal, pid: int) -> AppliedFault:
    driver = ProcessDriver()
    record = driver.plan(PAUSE, process_target(pid, "victim"))
    journal.injecting(record)
    asyncio.run(driver.apply(record))
    journal.applied(record)
    return record


def test_journal_replays_to_what_is_still_applied(
    tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "run-1" / "journal.jsonl"
    journal = Journal.create(path, "run-1")
    first = pause_into(journal, victim.pid)
    target = process_target(victim.pid, "victim")
    second = AppliedFault("process", "crash", target, {"signal": "SIGCONT"}, {})
    journal.injecting(second)  # written before it is applied: counts as maybe applied
    journal.reverted(second)
    state = read_journal(path)
    assert [r.id for r in state.pending] == [first.id]
    assert state.run == "run-1" and state.owner_alive and not state.closed
    with pytest.raises(JournalError, match="never reused"):
        Journal.create(path, "run-1")
    journal.release()


def test_a_torn_last_line_is_ignored_and_garbage_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    Journal.create(path, "r").release()
    with path.open("a") as stream:
        stream.write('{"event":"inject","fault":{"dri')
    assert read_journal(path).pending == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\nworld\n")
    with pytest.raises(JournalError, match="no line of it is intact"):
        read_journal(bad)
    other = tmp_path / "other.jsonl"
    other.write_text('{"event": "something"}\n')
    with pytest.raises(JournalError, match="not a chaoskit journal"):
        read_journal(other)


def test_rollback_reverts_once_and_records_it(
    tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal.create(path, "r")
    pause_into(journal, victim.pid)
    journal.release()
    wait_until(lambda: state_of(victim.pid) == "T", 2, "SIGSTOP to take effect")
    outcomes = asyncio.run(rollback(path)).outcomes
    assert [o.ok for o in outcomes] == [True]
    assert state_of(victim.pid) != "T"
    assert read_journal(path).pending == []
    again = asyncio.run(rollback(path))  # nothing left: a second rollback does nothing
    assert again.outcomes == [] and again.stopped == []


RUNNER = """
import asyncio, sys
from pathlib import Path
from pydantic import TypeAdapter
from chaoskit.drivers.process import ProcessDriver, process_target
from chaoskit.model import Fault
from chaoskit.runner import watchdog
from chaoskit.runner.journal import Journal

async def main() -> None:
    path = Path(sys.argv[1])
    journal = Journal.create(path, "watched")
    dog = watchdog.start(path, timeout=float(sys.argv[3]))
    renewing = asyncio.create_task(dog.keep_renewing())
    driver = ProcessDriver()
    record = driver.plan(TypeAdapter(Fault).validate_python({"type": "pause", "target": "t"}),
                         process_target(int(sys.argv[2]), "victim"))
    journal.injecting(record)
    await driver.apply(record)
    journal.applied(record)
    print("applied", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Runner processes started by a test; their pipes closed and they reaped afterwards."""
    runners: list[subprocess.Popen[str]] = []
    yield runners
    for runner in runners:
        runner.kill()
        runner.wait()
        assert runner.stdout is not None
        runner.stdout.close()


def run_watched(
    runners: list[subprocess.Popen[str]], tmp_path: Path, victim: int, timeout: float = 0.5
) -> subprocess.Popen[str]:
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(tmp_path / "journal.jsonl"), str(victim), str(timeout)],
        stdout=subprocess.PIPE,
        text=True,
    )
    runners.append(runner)
    assert runner.stdout is not None
    assert runner.stdout.readline().strip() == "applied"
    return runner


def test_watchdog_reverts_within_2s_when_the_runner_is_sigkilled(
    tmp_path: Path, victim: subprocess.Popen[bytes], watched: list[subprocess.Popen[str]]
) -> None:
    runner = run_watched(watched, tmp_path, victim.pid)
    wait_until(lambda: state_of(victim.pid) == "T", 2, "SIGSTOP to take effect")
    killed = time.monotonic()
    runner.kill()
    runner.wait()
    wait_until(lambda: state_of(victim.pid) != "T", 2, "the watchdog to resume the victim")
    assert time.monotonic() - killed < 2
    wait_until(lambda: read_journal(tmp_path / "journal.jsonl").pending == [], 2, "the record")
    log = tmp_path / "watchdog.log"  # written just after the journal: await it too
    wait_until(lambda: "pause on victim: reverted" in log.read_text(), 2, "the watchdog's log")
    assert "runner gone; reverting 1 fault(s), stopping 0 part(s)" in log.read_text()


def test_the_watchdog_loads_the_drivers_while_the_runner_lives(
    tmp_path: Path,
    victim: subprocess.Popen[bytes],
    watched: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a death, reverting waits for no import: the watchdog imported every built-in
    driver (the Docker SDK's tenth of a second among them) while the runner still lived."""
    monkeypatch.setenv("PYTHONVERBOSE", "1")  # each module in its log as it is loaded
    run_watched(watched, tmp_path, victim.pid)
    log = tmp_path / "watchdog.log"
    loaded = [f"import 'chaoskit.drivers.{name}' #" for name in ("toxiproxy", "docker", "clock")]
    wait_until(lambda: all(m in log.read_text() for m in loaded), 10, "the drivers loaded")
    assert watched[0].poll() is None and state_of(victim.pid) == "T"  # the runner lives on


def test_watchdog_kills_a_hung_runner_then_reverts(
    tmp_path: Path, victim: subprocess.Popen[bytes], watched: list[subprocess.Popen[str]]
) -> None:
    runner = run_watched(watched, tmp_path, victim.pid, timeout=0.5)
    os.kill(runner.pid, signal.SIGSTOP)  # hung: it stops renewing
    wait_until(lambda: state_of(victim.pid) != "T", 3, "the watchdog to resume the victim")
    assert runner.wait(timeout=5) == -signal.SIGKILL
    assert "runner hung" in (tmp_path / "watchdog.log").read_text()


def test_chaoskit_rollback_finds_stale_journals(
    tmp_path: Path, victim: subprocess.Popen[bytes]
) -> None:
    reports = tmp_path / "reports"
    path = reports / "run-7" / "journal.jsonl"
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from pathlib import Path\n"
            "from pydantic import TypeAdapter\n"
            "from chaoskit.drivers.process import ProcessDriver, process_target\n"
            "from chaoskit.model import Fault\n"
            "from chaoskit.runner.journal import Journal\n"
            "journal = Journal.create(Path(sys.argv[1]), 'run-7')\n"
            "fault = TypeAdapter(Fault).validate_python({'type': 'pause', 'target': 't'})\n"
            "record = ProcessDriver().plan(fault, process_target(int(sys.argv[2]), 'victim'))\n"
            "journal.injecting(record)\n"
            "asyncio.run(ProcessDriver().apply(record))\n",
            str(path),
            str(victim.pid),
        ],
        check=True,
    )
    assert writer.returncode == 0
    wait_until(lambda: state_of(victim.pid) == "T", 2, "SIGSTOP to take effect")
    assert [s.run for s in find_stale(reports)] == ["run-7"]  # its writer is gone
    command = [sys.executable, "-m", "chaoskit", "rollback", "--reports", str(reports)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "run run-7: reverting 1 fault(s), stopping 0 part(s)" in done.stdout
    assert "pause on process victim: reverted" in done.stdout
    assert state_of(victim.pid) != "T"
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert "nothing to roll back" in again.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "chaoskit", "rollback", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "no journal at" in bad.stderr
    assert json.loads(path.read_text().splitlines()[-1])["event"] == "revert"
