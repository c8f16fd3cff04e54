"""Game days: windows and blackouts honoured at a fixed clock; a real day that stops at its
first deviation, writes its report and tells its webhook; a scheduler restarted mid-slot (or
started twice) never runs a slot again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from web_experiment import web_experiment

from chaoskit.gameday.plan import PlanError, load_plan, run_plan
from chaoskit.gameday.schedule import Scheduler, SchedulerBusy, next_slot, state_path
from chaoskit.loader import LoadError
from chaoskit.model.gameday import GameDayPlan
from chaoskit.runner.stopping import StopSignals
from chaoskit.safety.policy import Policy

CHAOSKIT = [sys.executable, "-m", "chaoskit"]
BERLIN = ZoneInfo("Europe/Berlin")


def plan(**fields: Any) -> GameDayPlan:
    return GameDayPlan.model_validate({"name": "weekly", "experiments": ["a.yaml"], **fields})


def test_windows_and_blackouts_at_a_fixed_clock() -> None:
    weekly = plan(
        schedule={"cron": "0 10 * * tue", "timezone": "Europe/Berlin"},
        windows=[{"days": ["tue"], "start": "09:00", "end": "17:00", "timezone": "Europe/Berlin"}],
        blackouts=[{"start": "2026-12-22", "end": "2026-12-29", "reason": "freeze"}],
    )
    tuesday_ten = datetime(2026, 11, 24, 10, 0, tzinfo=BERLIN)
    assert weekly.refusals(tuesday_ten) == []
    assert weekly.refusals(tuesday_ten + timedelta(hours=8)) != []  # 18:00: after the window
    assert weekly.refusals(tuesday_ten + timedelta(days=1)) != []  # Wednesday
    frozen = weekly.refusals(datetime(2026, 12, 22, 10, 0, tzinfo=BERLIN))
    assert frozen == ["2026-12-22 is a blackout date (freeze)"]
    late_utc = datetime(2026, 12, 21, 23, 30, tzinfo=UTC)  # already the 22nd in Berlin
    assert any("blackout" in r for r in weekly.refusals(late_utc))
    assert next_slot(weekly, tuesday_ten) == datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)


def test_a_plan_outside_its_window_is_refused_before_anything_runs(tmp_path: Path) -> None:
    closed = plan(windows=[{"days": ["sat"], "start": "09:00", "end": "10:00"}])
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with pytest.raises(PlanError, match=r"outside every allowed window.*--force overrides"):
        asyncio.run(run_plan(closed, tmp_path / "plan.yaml", reports=tmp_path / "reports",
                             policy=Policy(), now=monday))  # fmt: skip
    assert not (tmp_path / "reports").exists()
    forced = plan(experiments=["missing.yaml"])
    with pytest.raises(PlanError, match=r"not all valid:\nmissing.yaml"):
        asyncio.run(run_plan(forced, tmp_path / "plan.yaml", reports=tmp_path / "reports",
                             policy=Policy(), now=monday, force=True))  # fmt: skip
    assert not (tmp_path / "reports").exists()


def test_a_plan_file_with_a_bad_cron_or_zone_says_where(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nexperiments: [a.yaml]\nschedule: {cron: '0 25 * * *', timezone: Mars/Base}\n"
    )
    with pytest.raises(LoadError) as info:
        load_plan(bad)
    text = str(info.value)
    assert "is not a cron expression" in text and "unknown time zone 'Mars/Base'" in text


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server recording every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_game_day_stops_at_its_first_deviation_reports_and_notifies(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(web_experiment(name, tmp_path))
    (tmp_path / "day.yaml").write_text(
        f"name: day\nexperiments: [first.yaml, second.yaml]\nnotify: {{url: '{url}'}}\n"
    )
    reports = tmp_path / "reports"
    done = subprocess.run(
        [*CHAOSKIT, "gameday", "run", str(tmp_path / "day.yaml"), "--reports", str(reports)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the first one deviated
    assert "first.yaml: deviated" in done.stdout and "second.yaml: skipped" in done.stdout
    [day_json] = reports.glob("gameday-day-*/gameday.json")
    day = json.loads(day_json.read_text())
    assert day["outcome"] == "deviated" and "first.yaml ended deviated" in day["stopped_early"]
    assert [e["outcome"] for e in day["experiments"]] == ["deviated", "skipped"]
    html = (day_json.parent / "gameday.html").read_text()
    assert "DEVIATED" in html and 'href="../' in html  # links to the run's own report
    assert len(list(reports.glob("*-first-*/report.html"))) == 1
    assert not list(reports.glob("*-second-*"))  # never started
    [message] = received
    assert message["event"] == "deviation" and message["plan"] == "day"


def test_a_scheduler_restarted_mid_slot_does_not_run_it_twice(tmp_path: Path) -> None:
    weekly = plan(schedule={"cron": "0 10 * * tue", "timezone": "Europe/Berlin"})
    slot = datetime(2026, 11, 24, 10, 0, tzinfo=BERLIN)
    state = state_path(tmp_path, weekly)
    runs: list[datetime] = []

    async def dies_mid_slot(at: datetime) -> str:
        runs.append(at)
        raise SystemExit("killed mid-slot")  # the process dies while the game day runs

    first = Scheduler(weekly, state, dies_mid_slot, clock=lambda: slot + timedelta(seconds=2))
    with pytest.raises(SystemExit):
        asyncio.run(first.run_due())
    assert runs == [slot] and first.slots()[slot.isoformat()]["state"] == "started"

    async def runs_fine(at: datetime) -> str:
        runs.append(at)
        return "held"

    restarted = Scheduler(weekly, state, runs_fine, clock=lambda: slot + timedelta(seconds=30))
    assert asyncio.run(restarted.run_due()) is None
    assert runs == [slot]  # not run again
    next_week = slot + timedelta(days=7)
    later = Scheduler(weekly, state, runs_fine, clock=lambda: next_week + timedelta(minutes=2))
    assert asyncio.run(later.run_due()) == "held"  # an unclaimed slot within grace runs
    assert asyncio.run(later.run_due()) is None  # once
    too_late = Scheduler(weekly, state, runs_fine,
                         clock=lambda: next_week + timedelta(days=7, minutes=10))  # fmt: skip
    assert asyncio.run(too_late.run_due()) is None  # past grace: left for the next slot
    assert runs == [slot, next_week]


def test_a_second_scheduler_of_the_same_plan_is_refused(tmp_path: Path) -> None:
    weekly = plan(schedule={"cron": "0 10 * * tue"})
    state = state_path(tmp_path, weekly)

    async def never(at: datetime) -> str:
        raise AssertionError(at)

    async def both(stop_signals: StopSignals) -> None:
        waiting = asyncio.Event()  # the first holds the lock and waits for its next slot
        first = Scheduler(weekly, state, never, log=lambda _: waiting.set())
        serving = asyncio.create_task(first.serve(stop_signals))
        await waiting.wait()
        with pytest.raises(SchedulerBusy, match="another scheduler of plan 'weekly'"):
            await Scheduler(weekly, state, never).serve(stop_signals)
        os.kill(os.getpid(), signal.SIGTERM)  # between slots: the first ends at once
        assert await asyncio.wait_for(serving, 10) is None  # its next slot is days away

    with StopSignals(say=lambda _: None) as stop_signals:
        asyncio.run(both(stop_signals))
