"""Every way a run is stopped ends the same way: the faults reverted, result.json, the three
reports and the history entry written, exit 3. One Ctrl-C, two, SIGTERM, SIGHUP,
``chaoskit halt`` whatever kill switch the experiment declares, a watchdog that dies, a reports
disk that fills up; and a reports folder that is full or read-only refuses the run before
anything is touched.

The fault is a real pause of a real process the test owns (a ``pids:`` target), so what is
checked after the run is the process itself, not chaoskit's word for it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from disks import fill, tmpfs
from processes import alive, sleeper, state_of
from waiting import wait_until

from chaoskit.runner.journal import read_journal

pytestmark = pytest.mark.slow
CHAOSKIT = [sys.executable, "-m", "chaoskit"]

EXPERIMENT = """
version: 1
name: {name}
system: {{stack: {{replicas: 1}}}}
targets: {{victim: {{kind: process, pids: [{pid}]}}}}
load: {{url: "http://127.0.0.1:${{ports.frontend}}/items", rate: 20/s, timeout: 2s}}
steady_state: [{{name: errors, of: error_rate, max: 5%}}]
faults: [{{type: pause, target: victim}}]
blast_radius: {{count: 1}}
phases: {{warmup: 0s, baseline: 2s, fault: 60s, recovery: 1s}}
safety:
  abort_when: [{{metric: errors, above: 50%, for: 2s}}]
  max_duration: 3m
  {kill_switch}
"""


@pytest.fixture
def victim() -> Iterator[int]:
    with sleeper() as pid:
        yield pid


def experiment_file(tmp_path: Path, pid: int, kill_switch: str = "") -> Path:
    path = tmp_path / "stopped.yaml"
    path.write_text(EXPERIMENT.format(name="stopped", pid=pid, kill_switch=kill_switch))
    return path


def start(experiment: Path, reports: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(reports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_the_fault(runner: subprocess.Popen[str], reports: Path, pid: int) -> None:
    def applied() -> bool:
        if runner.poll() is not None:
            out, err = runner.communicate()
            raise AssertionError(f"the run ended before its fault ({runner.returncode}):{out}{err}")
        return any('"event":"applied"' in p.read_text() for p in reports.glob("*/journal.jsonl"))

    wait_until(applied, 120, "the pause to be applied")
    # SIGSTOP wakes a sleeping process to stop it: it may show R for a moment before T.
    wait_until(lambda: state_of(pid) == "T", 5, "the victim to be stopped")


def assert_stopped_cleanly(
    runner: subprocess.Popen[str], reports: Path, pid: int, reason: str
) -> dict[str, object]:
    out, err = runner.communicate(timeout=90)
    assert runner.returncode == 3, out + err
    assert state_of(pid) != "T"  # the process runs again
    [folder] = [p.parent for p in reports.glob("*/journal.jsonl")]
    result: dict[str, object] = json.loads((folder / "result.json").read_text())
    safety = result["safety"]
    assert isinstance(safety, dict) and safety["reason"] == reason, safety
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (folder / name).stat().st_size > 0, f"{name} missing: {out}{err}"
    with sqlite3.connect(reports / "history.db") as db:
        assert db.execute("select count(*) from runs").fetchone() == (1,)
    last = json.loads((folder / "journal.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "close"  # nothing left applied
    return result


@pytest.mark.parametrize(
    "signals",
    [
        pytest.param(("SIGINT",), id="SIGINT"),
        pytest.param(("SIGINT", "SIGINT"), id="SIGINT+SIGINT", marks=pytest.mark.long),
        pytest.param(("SIGTERM",), id="SIGTERM"),
        pytest.param(("SIGHUP",), id="SIGHUP"),
        pytest.param(("SIGTERM", "SIGINT"), id="SIGTERM+SIGINT", marks=pytest.mark.long),
    ],
)
def test_every_stop_signal_reverts_and_writes_every_report(
    tmp_path: Path, victim: int, signals: tuple[str, ...]
) -> None:
    reports = tmp_path / "reports"
    runner = start(experiment_file(tmp_path, victim), reports)
    wait_for_the_fault(runner, reports, victim)
    for i, name in enumerate(signals):
        if i:
            time.sleep(0.2)  # the scenario: a second signal while the first is being handled
        runner.send_signal(signal.Signals[name])
    result = assert_stopped_cleanly(runner, reports, victim, "signal")
    assert result["safety"]["detail"] == signals[0]  # type: ignore[index]


def test_halt_stops_a_run_that_declares_its_own_kill_file(tmp_path: Path, victim: int) -> None:
    reports = tmp_path / "reports"
    declared = tmp_path / "stop-chaos"
    runner = start(experiment_file(tmp_path, victim, f"kill_switch: {{file: {declared}}}"), reports)
    wait_for_the_fault(runner, reports, victim)
    halted = subprocess.run(
        [*CHAOSKIT, "halt", "--reports", str(reports)],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert halted.returncode == 0, halted.stderr
    assert "every run has ended" in halted.stdout
    assert_stopped_cleanly(runner, reports, victim, "kill_file")


def watchdog_of(journal: Path) -> int:
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chaoskit.runner.watchdog" in argv and str(journal).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no watchdog for {journal}")


def test_a_run_whose_watchdog_dies_reverts_and_stops(tmp_path: Path, victim: int) -> None:
    reports = tmp_path / "reports"
    runner = start(experiment_file(tmp_path, victim), reports)
    wait_for_the_fault(runner, reports, victim)
    [journal] = reports.glob("*/journal.jsonl")
    os.kill(watchdog_of(journal), signal.SIGKILL)
    result = assert_stopped_cleanly(runner, reports, victim, "watchdog")
    assert "nobody would revert" in result["safety"]["detail"]  # type: ignore[index]


@pytest.mark.long
def test_a_hung_runner_is_killed_reverted_and_recorded(tmp_path: Path, victim: int) -> None:
    """SIGSTOP stands in for a runner that hangs (nothing it runs can renew its lease)."""
    reports = tmp_path / "reports"
    runner = start(experiment_file(tmp_path, victim, "watchdog_lease: 2s"), reports)
    wait_for_the_fault(runner, reports, victim)
    [journal] = reports.glob("*/journal.jsonl")
    dog = watchdog_of(journal)
    runner.send_signal(signal.SIGSTOP)
    out, err = runner.communicate(timeout=60)  # the watchdog's SIGKILL ends it
    assert runner.returncode == -signal.SIGKILL, out + err
    wait_until(lambda: not alive(dog), 150, "the watchdog to finish its records")
    assert state_of(victim) != "T"
    folder = journal.parent
    result = json.loads((folder / "result.json").read_text())
    assert result["outcome"] == "aborted" and result["exit_code"] == 137
    assert result["safety"]["reason"] == "hung"
    assert "no sign of life for 2s" in result["safety"]["detail"]
    assert f"pause on pid-{victim}: reverted" in result["safety"]["detail"]
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (folder / name).stat().st_size > 0, name
    with sqlite3.connect(reports / "history.db") as db:
        assert db.execute("select outcome, exit_code from runs").fetchall() == [("aborted", 137)]
    left = read_journal(journal)
    assert not left.pending and not left.running  # the stack it started is stopped too


@pytest.mark.long
def test_a_runner_stalled_for_10s_is_not_taken_for_hung(tmp_path: Path, victim: int) -> None:
    """A whole-process stop is the worst stall a swapping machine or a slow engine call can
    cause; with the default lease the run goes on and ends as asked (here by Ctrl-C)."""
    reports = tmp_path / "reports"
    runner = start(experiment_file(tmp_path, victim), reports)
    wait_for_the_fault(runner, reports, victim)
    runner.send_signal(signal.SIGSTOP)
    time.sleep(10.0)  # the stall itself is the scenario, not a wait for an event
    runner.send_signal(signal.SIGCONT)
    assert runner.poll() is None
    runner.send_signal(signal.SIGINT)
    result = assert_stopped_cleanly(runner, reports, victim, "signal")
    loop = result["event_loop"]
    assert isinstance(loop, dict) and loop["worst_lag"] >= 9.5 and loop["stalls"] >= 1, loop
    [folder] = [p.parent for p in reports.glob("*/journal.jsonl")]
    summary = (folder / "summary.md").read_text()
    assert "- caution: the runner itself stalled for up to 10." in summary, summary
    assert "Caution:</strong> the runner itself stalled" in (folder / "report.html").read_text()


@pytest.fixture
def reports_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 40 MiB filesystem for the reports folder."""
    with tmpfs(tmp_path / "reports", "40m") as mount:
        yield mount


def test_a_reports_disk_that_fills_up_stops_the_run_with_room_for_its_records(
    tmp_path: Path, victim: int, reports_disk: Path
) -> None:
    runner = start(experiment_file(tmp_path, victim), reports_disk)
    wait_for_the_fault(runner, reports_disk, victim)
    fill(reports_disk, leave=5 * 2**20)
    result = assert_stopped_cleanly(runner, reports_disk, victim, "disk")
    assert "left under" in result["safety"]["detail"]  # type: ignore[index]


def test_a_reports_disk_full_to_the_last_byte_still_reverts_and_says_so(
    tmp_path: Path, victim: int, reports_disk: Path
) -> None:
    runner = start(experiment_file(tmp_path, victim), reports_disk)
    wait_for_the_fault(runner, reports_disk, victim)
    fill(reports_disk, leave=0)
    out, err = runner.communicate(timeout=90)
    assert runner.returncode == 3, out + err
    assert state_of(victim) != "T"  # reverted, with no byte to record it
    assert "aborted: only" in out and "result: NOT WRITTEN" in err
    assert "Traceback" not in err


def test_a_full_or_read_only_reports_folder_refuses_before_anything_is_touched(
    tmp_path: Path, victim: int, reports_disk: Path
) -> None:
    experiment = experiment_file(tmp_path, victim)
    fill(reports_disk, leave=16 * 2**20)
    full = subprocess.run(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(reports_disk)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert full.returncode == 2, full.stdout + full.stderr
    assert "refused, nothing was touched: only" in full.stderr and "MiB free" in full.stderr
    (reports_disk / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(reports_disk)], check=True)
    read_only = subprocess.run(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(reports_disk)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert read_only.returncode == 2, read_only.stdout + read_only.stderr
    assert "Read-only file system" in read_only.stderr
    assert list(reports_disk.iterdir()) == [] and state_of(victim) != "T"


@pytest.mark.long
def test_a_run_stops_when_the_policys_window_closes(tmp_path: Path, victim: int) -> None:
    """Started inside the site policy's window, the run may not outlive it: when the window
    closes mid-fault, the run stops as if halted."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    closes = now + timedelta(seconds=40)  # room to bring the system up; the fault lasts 60 s
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nwindows: [{{start: '{(now - timedelta(minutes=5)).time():%H:%M:%S}', "
        f"end: '{closes.time():%H:%M:%S}', timezone: UTC}}]\n"
    )
    reports = tmp_path / "reports"
    runner = subprocess.Popen(
        [*CHAOSKIT, "run", str(experiment_file(tmp_path, victim)), "--reports", str(reports),
         "--policy", str(policy)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_the_fault(runner, reports, victim)
    result = assert_stopped_cleanly(runner, reports, victim, "window")
    assert "allows experiments until" in result["safety"]["detail"]  # type: ignore[index]
