"""Stopping a game day: SIGINT, SIGTERM or SIGHUP sent to a real ``chaoskit gameday schedule``
during a slot stops that slot's experiment as ``chaoskit run`` stops (its fault reverted, its
result, reports and history entry written), records the slot as stopped and ends the scheduler
(exit 3) instead of running the rest of the plan; between slots it ends the scheduler at once.
``chaoskit gameday run`` stops the same way, even with ``stop_on_deviation: false``.

The fault is a real pause of a process the test owns, so what is checked afterwards is that
process itself; the load goes to a local web server the experiment starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from processes import sleeper, state_of
from waiting import wait_until

from chaoskit.gameday.plan import load_plan, run_plan
from chaoskit.runner.stopping import StopSignals
from chaoskit.safety.policy import Policy

CHAOSKIT = [sys.executable, "-m", "chaoskit"]

# A warm-up of 1 s, not 0 s: a run stopped before its load generator ever ran, with no warm-up
# to wait through, waits for that generator forever (LoadGenerator.stop before run), and a test
# whose guarded code is broken must fail, not hang.
EXPERIMENT = """
version: 1
name: {name}
system:
  ports: [web]
  processes:
    - name: web
      command: ["{python}", "-m", "http.server", "--bind", "127.0.0.1", "${{ports.web}}"]
      cwd: "{folder}"
      ready: {{http: "http://127.0.0.1:${{ports.web}}/"}}
targets: {{victim: {{kind: process, pids: [{pid}]}}}}
load: {{url: "http://127.0.0.1:${{ports.web}}/", rate: 20/s, timeout: 2s}}
steady_state: [{{name: errors, of: error_rate, max: 5%}}]
faults: [{{type: pause, target: victim}}]
blast_radius: {{count: 1}}
phases: {{warmup: 1s, baseline: 1s, fault: {fault}, recovery: 1s}}
safety:
  abort_when: [{{metric: errors, above: 50%, for: 2s}}]
  max_duration: 3m
  kill_switch: {{signals: {signals}}}
"""


@pytest.fixture
def victim() -> Iterator[int]:
    with sleeper() as pid:
        yield pid


def write_plan(
    folder: Path, pid: int, schedule: str | None = None, fault: str = "60s", signals: bool = True
) -> Path:
    """A plan of two experiments (each a pause of ``pid``) that does not stop on deviation:
    only a stop signal keeps the second from running."""
    for name in ("first", "second"):
        text = EXPERIMENT.format(
            name=name, python=sys.executable, folder=folder, pid=pid, fault=fault,
            signals=str(signals).lower(),
        )  # fmt: skip
        (folder / f"{name}.yaml").write_text(text)
    plan = folder / "day.yaml"
    plan.write_text(
        "name: day\nexperiments: [first.yaml, second.yaml]\nstop_on_deviation: false\n"
        + (f"schedule: {{cron: '{schedule}'}}\n" if schedule else "")
    )
    return plan


class Lines:
    """A process's stderr, line by line as it comes, kept whole for the failure message."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self.reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)  # the end of the stream: the process has ended

    def await_line(self, part: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if part in line:
                return
        raise AssertionError(f"no line with {part!r} within {timeout}s:\n{''.join(self.seen)}")

    def rest(self) -> str:
        """Everything it wrote (call once it has ended)."""
        while (line := self._queue.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


@contextlib.contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``chaoskit ARGS...``, started; killed if it is still running afterwards."""
    pipe = subprocess.PIPE
    with subprocess.Popen([*CHAOSKIT, *args], stdout=pipe, stderr=pipe, text=True) as process:
        lines = Lines(process)
        try:
            yield process, lines
        finally:
            process.kill()
            lines.reader.join(30)  # its stderr read to the end before the pipe is closed


def wait_for_the_fault(process: subprocess.Popen[str], reports: Path, pid: int) -> None:
    def applied() -> bool:
        assert process.poll() is None, f"it ended before the fault ({process.returncode})"
        return any('"event":"applied"' in p.read_text() for p in reports.glob("*/journal.jsonl"))

    wait_until(applied, 120, "the pause to be applied")
    assert state_of(pid) == "T"


def assert_first_stopped_cleanly(reports: Path, pid: int, sent: str) -> None:
    """The first experiment was stopped as `chaoskit run` stops, the second never started, and
    the day's gameday.json and gameday.html say so."""
    assert state_of(pid) != "T"  # the process runs again
    [folder] = [p.parent for p in reports.glob("*/journal.jsonl")]  # the second never started
    assert "-first-" in folder.name
    result = json.loads((folder / "result.json").read_text())
    assert result["safety"]["reason"] == "signal" and result["safety"]["detail"] == sent
    for name in ("report.html", "junit.xml", "summary.md"):
        assert (folder / name).stat().st_size > 0, name
    with sqlite3.connect(reports / "history.db") as db:
        assert db.execute("select count(*) from runs").fetchone() == (1,)
    last = json.loads((folder / "journal.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "close"  # nothing left applied
    [day_json] = reports.glob("gameday-day-*/gameday.json")
    day: dict[str, Any] = json.loads(day_json.read_text())
    assert day["stopped_by"] == sent and day["outcome"] == "aborted"
    assert [e["outcome"] for e in day["experiments"]] == ["aborted", "skipped"]
    html = (day_json.parent / "gameday.html").read_text()
    assert f"{sent} stopped the game day during first.yaml" in html


@pytest.mark.slow
@pytest.mark.parametrize("sent", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_during_a_slot_stops_its_day_and_ends_the_scheduler(
    tmp_path: Path, victim: int, sent: str
) -> None:
    reports = tmp_path / "reports"
    plan = write_plan(tmp_path, victim, schedule="* * * * *")  # a slot is due now
    with running("gameday", "schedule", str(plan), "--reports", str(reports)) as (scheduler, lines):
        wait_for_the_fault(scheduler, reports, victim)
        scheduler.send_signal(signal.Signals[sent])
        scheduler.wait(90)
    output = lines.rest()
    assert scheduler.returncode == 3, output
    assert_first_stopped_cleanly(reports, victim, sent)
    [(slot, entry)] = json.loads((reports / "gamedays" / "day.json").read_text())["slots"].items()
    assert entry["state"] == "stopped" and entry["by"] == sent and entry["outcome"] == "aborted"
    assert f"{sent} stopped slot {slot}; the scheduler ends" in output
    assert "next slot" not in output


@pytest.mark.slow
def test_a_signal_between_slots_ends_the_scheduler_at_once(tmp_path: Path, victim: int) -> None:
    reports = tmp_path / "reports"
    hour = (datetime.now(UTC) + timedelta(hours=2)).hour  # its last slot is an hour past grace
    plan = write_plan(tmp_path, victim, schedule=f"0 {hour} * * *")
    with running("gameday", "schedule", str(plan), "--reports", str(reports)) as (scheduler, lines):
        lines.await_line("next slot of day", 60)
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(10)  # its next slot is hours away: it does not wait for it
    output = lines.rest()
    assert scheduler.returncode == 0, output
    assert "SIGTERM: the scheduler ends" in output
    assert not list(reports.glob("*/journal.jsonl"))
    assert not (reports / "gamedays" / "day.json").exists()  # no slot was claimed


@pytest.mark.slow
def test_ctrl_c_stops_a_game_day_that_does_not_stop_on_deviation(
    tmp_path: Path, victim: int
) -> None:
    reports = tmp_path / "reports"
    plan = write_plan(tmp_path, victim)
    with running("gameday", "run", str(plan), "--reports", str(reports)) as (runner, lines):
        wait_for_the_fault(runner, reports, victim)
        runner.send_signal(signal.SIGINT)
        runner.wait(90)
        assert runner.stdout is not None
        out = runner.stdout.read()
    err = lines.rest()
    assert runner.returncode == 3, out + err
    assert_first_stopped_cleanly(reports, victim, "SIGINT")
    assert "stopped early: SIGINT stopped the game day during first.yaml" in out
    assert "second.yaml: skipped (not run: stopped by SIGINT)" in out


def test_a_signal_between_experiments_runs_none_after_it(tmp_path: Path, victim: int) -> None:
    """Caught before an experiment starts (as between two): none runs, nothing is touched, and
    the day, in which every experiment that ran held, is aborted."""
    plan_path = write_plan(tmp_path, victim)
    reports = tmp_path / "reports"
    with StopSignals(say=lambda _: None) as stop_signals:
        os.kill(os.getpid(), signal.SIGTERM)
        day = asyncio.run(
            run_plan(load_plan(plan_path), plan_path, reports=reports, policy=Policy(),
                     now=datetime.now(UTC), log=lambda _: None, stop_signals=stop_signals)
        )  # fmt: skip
    assert [e.outcome for e in day.experiments] == ["skipped", "skipped"]
    assert day.stopped_by == "SIGTERM" and day.outcome == "aborted"
    assert day.experiments[0].message == "not run: stopped by SIGTERM"
    assert not list(reports.glob("*/journal.jsonl"))


@pytest.mark.slow
def test_an_experiment_that_lets_signals_through_ends_and_the_day_stops_after_it(
    tmp_path: Path, victim: int
) -> None:
    """``kill_switch.signals: false``: the signal does not stop that experiment, which runs to
    its end; the day stops after it."""
    plan_path = write_plan(tmp_path, victim, fault="2s", signals=False)
    reports = tmp_path / "reports"

    def log(line: str) -> None:
        if line.startswith("injected pause"):  # the fault is on: Ctrl-C now
            os.kill(os.getpid(), signal.SIGINT)

    with StopSignals(say=lambda _: None) as stop_signals:
        day = asyncio.run(
            run_plan(load_plan(plan_path), plan_path, reports=reports, policy=Policy(),
                     now=datetime.now(UTC), log=log, stop_signals=stop_signals)
        )  # fmt: skip
    assert stop_signals.received == ["SIGINT"]
    first, second = day.experiments
    assert first.outcome != "aborted" and second.outcome == "skipped", day
    [folder] = [p.parent for p in reports.glob("*/result.json")]
    result = json.loads((folder / "result.json").read_text())
    assert result["safety"] is None and [p["phase"] for p in result["phases"]][-1] == "recovery"
    assert day.stopped_by == "SIGINT" and day.stopped_early is not None
    assert state_of(victim) != "T"
