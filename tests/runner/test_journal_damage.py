"""A journal that survives damage: a line torn in the middle, a torn last line, NUL bytes,
an unreadable head, a full disk under it. Every intact applied fault is still reverted, damage
is reported and blocks new runs until a person dismisses it, and no command crashes.

The faults are real: paused processes and clock-skew files, reverted by ``chaoskit rollback``
in a fresh process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from disks import fill, tmpfs
from processes import state_of
from pydantic import TypeAdapter
from waiting import wait_until

from chaoskit.drivers.base import AppliedFault, Target
from chaoskit.launch.faketime import write_skew
from chaoskit.model import Fault
from chaoskit.runner.journal import Journal, JournalError, encode, find_stale, read_journal

PAUSE = TypeAdapter(Fault).validate_python({"type": "pause", "target": "t"})
CHAOSKIT = [sys.executable, "-m", "chaoskit"]


@pytest.fixture
def victims() -> Iterator[list[int]]:
    processes = [subprocess.Popen(["sleep", "300"]) for _ in range(2)]
    yield [p.pid for p in processes]
    for process in processes:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()


def chaoskit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHAOSKIT, *args], capture_output=True, text=True, check=False)


def crashed_run(reports: Path, victims: list[int], skew: Path) -> Path:
    """A journal as a run that died would leave it: two paused processes and a +600 s skew,
    written by a process that has exited (so its owner is gone)."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from pydantic import TypeAdapter\n"
        "from chaoskit.drivers.base import AppliedFault, Target\n"
        "from chaoskit.drivers.process import ProcessDriver, process_target\n"
        "from chaoskit.model import Fault\n"
        "from chaoskit.runner.journal import Journal\n"
        "journal = Journal.create(Path(sys.argv[1]), 'crashed')\n"
        "fault = TypeAdapter(Fault).validate_python({'type': 'pause', 'target': 't'})\n"
        "for pid in sys.argv[2:4]:\n"
        "    record = ProcessDriver().plan(fault, process_target(int(pid), 'victim-' + pid))\n"
        "    journal.injecting(record)\n"
        "    asyncio.run(ProcessDriver().apply(record))\n"
        "target = Target('process', 'web', {}, {'pid': 1, 'start': 0, 'faketime': sys.argv[4]})\n"
        "journal.injecting(AppliedFault('clock', 'clock_skew', target,\n"
        "    {'file': sys.argv[4], 'seconds': 600.0}, {'file': sys.argv[4]}))\n"
    )
    path = reports / "crashed" / "journal.jsonl"
    write_skew(skew, 600)
    argv = [sys.executable, "-c", script, str(path), *map(str, victims), str(skew)]
    subprocess.run(argv, check=True)
    for pid in victims:
        wait_until(lambda pid=pid: state_of(pid) == "T", 2, "SIGSTOP to take effect")
    return path


def damage_line(path: Path, number: int, how: str) -> None:
    lines = path.read_bytes().split(b"\n")
    line = lines[number - 1]
    if how == "torn":  # a piece cut out of its middle
        lines[number - 1] = line[: len(line) // 3] + line[2 * len(line) // 3 :]
    elif how == "nul":
        lines[number - 1] = line[:20] + b"\0" * 40 + line[60:]
    elif how == "latin-1":
        lines[number - 1] = line.replace(b"victim", "vìctim".encode("latin-1"))
    path.write_bytes(b"\n".join(lines))


@pytest.mark.parametrize("how", ["torn", "nul", "latin-1"])
def test_a_damaged_line_blocks_runs_but_every_intact_fault_is_reverted(
    tmp_path: Path, victims: list[int], how: str
) -> None:
    reports, skew = tmp_path / "reports", tmp_path / "skew"
    path = crashed_run(reports, victims, skew)
    damage_line(path, 2, how)  # the first pause's inject: what it named is unknown now
    state = read_journal(path)
    assert [d.line for d in state.damaged] == [2]
    assert [r.target.name for r in state.pending] == [f"victim-{victims[1]}", "web"]
    assert [s.path for s in find_stale(reports)] == [path]

    halted = chaoskit("halt", "--reports", str(reports))  # reads every journal: no crash
    assert halted.returncode == 0 and "no run is going on" in halted.stdout

    rolled = chaoskit("rollback", "--reports", str(reports))
    assert rolled.returncode == 1, rolled.stderr  # a person must look at line 2
    assert "reverting 2 fault(s)" in rolled.stdout
    assert "DAMAGED: line 2" in rolled.stderr and "--dismiss" in rolled.stderr
    assert state_of(victims[1]) != "T" and float(skew.read_text()) == 0.0
    assert state_of(victims[0]) == "T"  # the damaged line's fault: left to the person
    assert [s.path for s in find_stale(reports)] == [path]  # still blocks new runs

    os.kill(victims[0], signal.SIGCONT)  # the person puts it right by hand...
    dismissed = chaoskit("rollback", "--dismiss", str(path.parent))
    assert dismissed.returncode == 0, dismissed.stderr
    assert find_stale(reports) == []  # ...and says so: runs may go on
    assert read_journal(path).dismissed


def test_a_torn_last_line_is_isolated_before_the_rollback_appends(
    tmp_path: Path, victims: list[int]
) -> None:
    reports, skew = tmp_path / "reports", tmp_path / "skew"
    path = crashed_run(reports, victims, skew)
    with path.open("ab") as stream:
        stream.write(b'{"event":"inject","fault":{"dri')  # the crash cut this record short
    assert read_journal(path).torn and read_journal(path).damaged == []
    rolled = chaoskit("rollback", "--reports", str(reports))
    assert rolled.returncode == 0, rolled.stderr
    after = read_journal(path)  # readable for good, with nothing damaged or left
    assert after.pending == [] and after.damaged == [] and after.torn
    assert find_stale(reports) == []
    assert all(state_of(pid) != "T" for pid in victims)


def test_a_journal_with_no_intact_line_blocks_runs_and_says_what_to_do(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    path = reports / "mangled" / "journal.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0\0\0\xff\xfe\n" * 3)
    [stale] = find_stale(reports)
    assert "no line of it is intact" in stale.trouble()
    rolled = chaoskit("rollback", str(path))
    assert rolled.returncode == 2 and "is not a chaoskit journal" in rolled.stderr
    dismissed = chaoskit("rollback", "--dismiss", str(path))
    assert dismissed.returncode == 2  # not a journal: there is nothing to append to


def test_a_damaged_head_still_reverts_intact_faults(tmp_path: Path, victims: list[int]) -> None:
    reports, skew = tmp_path / "reports", tmp_path / "skew"
    path = crashed_run(reports, victims, skew)
    damage_line(path, 1, "nul")
    state = read_journal(path)
    assert not state.understood and len(state.pending) == 3
    assert [s.path for s in find_stale(reports)] == [path]
    rolled = chaoskit("rollback", str(path))
    assert "reverting 3 fault(s)" in rolled.stdout and "DAMAGED: line 1" in rolled.stderr
    assert all(state_of(pid) != "T" for pid in victims) and float(skew.read_text()) == 0.0


def test_each_line_carries_a_checksum_and_a_version_1_journal_is_still_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal.create(path, "r")
    target = Target("process", "web", {}, {"pid": 1, "start": 0})
    record = AppliedFault("process", "pause", target, {}, {"signal": "SIGCONT"})
    journal.injecting(record)
    journal.release()
    line = path.read_bytes().split(b"\n")[1]
    path.write_bytes(path.read_bytes().replace(line, line.replace(b"pause", b"crash")))
    assert [d.why for d in read_journal(path).damaged] == ["its checksum does not match"]
    old = tmp_path / "v1.jsonl"
    head = b'{"event":"open","v":1,"run":"old","pid":1,"pid_start":0,"host":"h","at":0}'
    inject = encode({"event": "inject", "fault": record.to_json()}).split(b',"crc"')[0] + b"}"
    old.write_bytes(head + b"\n" + inject + b"\n")
    assert [r.id for r in read_journal(old).pending] == [record.id]
    newer = tmp_path / "v9.jsonl"
    newer.write_bytes(encode({"event": "open", "v": 9, "run": "x", "pid": 1}))
    with pytest.raises(JournalError, match="newer than this chaoskit reads"):
        read_journal(newer)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB filesystem, to be filled."""
    with tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def test_a_full_disk_fails_a_write_cleanly_and_the_next_one_starts_a_fresh_line(
    small_disk: Path,
) -> None:
    path = small_disk / "run" / "journal.jsonl"
    journal = Journal.create(path, "r")
    target = Target("process", "web", {}, {"pid": 1, "start": 0})
    huge = AppliedFault("process", "pause", target, {"padding": "x" * 20_000}, {})
    filler = fill(small_disk)
    with pytest.raises(JournalError, match="No space left on device"):
        journal.injecting(huge)  # it never counts as written: the fault is not applied
    filler.unlink()
    small = AppliedFault("process", "pause", target, {}, {"signal": "SIGCONT"})
    journal.injecting(small)
    journal.release()
    state = read_journal(path)
    assert [r.id for r in state.pending] == [small.id] and state.damaged == []


def test_the_skew_revert_needs_no_free_disk(small_disk: Path) -> None:
    from chaoskit.drivers.clock import ClockDriver

    skew = small_disk / "skew"
    write_skew(skew, 600)
    target = Target("process", "web", {}, {"faketime": str(skew)})
    record = AppliedFault("clock", "clock_skew", target, {}, {"file": str(skew)})
    fill(small_disk)
    with pytest.raises(OSError, match="No space left"):
        write_skew(skew, 0)  # a temporary file and a rename: impossible here
    import asyncio

    asyncio.run(ClockDriver().revert(record))
    assert float(skew.read_text()) == 0.0
