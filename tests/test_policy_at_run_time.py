"""The site policy at run time, with real processes and the real clock: ``chaoskit run``
outside the policy's windows or on a blackout date, or aimed by pid at a protected process,
exits 2 with nothing touched; ``validate`` only notes that a run now would be refused; a game
day is refused by the policy's windows at its start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from proxy_servers import proxy_server
from waiting import answers, get_json, wait_until

from chaoskit.gameday.plan import PlanError, run_plan
from chaoskit.model.gameday import GameDayPlan
from chaoskit.safety.policy import Policy
from chaoskit.stack.launcher import free_ports

CHAOSKIT = [sys.executable, "-m", "chaoskit"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

EXPERIMENT = """
version: 1
name: crash-the-db
targets: {{db: {{kind: process, pids: [{pid}]}}}}
load: {{url: "http://127.0.0.1:9/", rate: 10/s}}
steady_state: [{{name: errors, of: error_rate, max: 5%}}]
faults: [{{type: crash, target: db, signal: SIGKILL, duration: 1s}}]
blast_radius: {{count: 1}}
phases: {{warmup: 1s, baseline: 1s, fault: 1s, recovery: 1s}}
safety: {{abort_when: [{{metric: errors, above: 50%, for: 1s}}], max_duration: 1m}}
"""


def closed_now() -> str:
    """A policy whose only window is on a day three days from now: closed at any hour today."""
    later = DAYS[(datetime.now(UTC).weekday() + 3) % 7]
    return f"windows: [{{days: [{later}], start: '09:00', end: '17:00', timezone: UTC}}]\n"


def blacked_out_now() -> str:
    """A policy whose blackout runs from yesterday to tomorrow (UTC)."""
    today = datetime.now(UTC).date()
    return (
        f"blackouts: [{{start: {today - timedelta(days=1)}, end: {today + timedelta(days=1)}, "
        "reason: release freeze}]\n"
    )


@pytest.fixture
def prod_db() -> Iterator[subprocess.Popen[bytes]]:
    """A real process that calls itself prod-db (``exec -a``): the one the run would crash."""
    process = subprocess.Popen(["bash", "-c", "exec -a prod-db sleep 120"])
    wait_until(
        lambda: Path(f"/proc/{process.pid}/cmdline").read_bytes().startswith(b"prod-db\0"),
        5,
        "prod-db to start",
    )
    yield process
    process.kill()
    process.wait(5)


def chaoskit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHAOSKIT_POLICY"}
    return subprocess.run(
        [*CHAOSKIT, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60,
        check=False,
    )  # fmt: skip


def run_with(policy: str, pid: int, folder: Path) -> subprocess.CompletedProcess[str]:
    (folder / "policy.yaml").write_text(policy)
    (folder / "crash.yaml").write_text(EXPERIMENT.format(pid=pid))
    return chaoskit(
        "run", "crash.yaml", "--policy", "policy.yaml", "--reports", "reports", cwd=folder
    )


@pytest.mark.parametrize(
    ("policy", "said"),
    [
        (closed_now, "is outside every allowed window"),
        (blacked_out_now, "is a blackout date in UTC (release freeze)"),
    ],
)
def test_a_run_the_clock_forbids_exits_2_with_nothing_touched(
    policy: object, said: str, prod_db: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    assert callable(policy)
    done = run_with(policy(), prod_db.pid, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "refused, nothing was touched" in done.stderr and said in done.stderr
    assert prod_db.poll() is None  # not crashed
    assert not (tmp_path / "reports").exists()  # refused before the run folder was made


def test_a_run_aimed_by_pid_at_a_protected_process_exits_2_and_leaves_it_running(
    prod_db: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    policy = "protected: [{select: 'prod-db*', reason: the production database}]\n"
    done = run_with(policy, prod_db.pid, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"(pid {prod_db.pid}, process sleep, command line 'prod-db 120')" in done.stderr
    assert "the production database" in done.stderr
    assert prod_db.poll() is None


def test_validate_notes_a_closed_policy_but_still_passes_the_file(
    prod_db: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(closed_now())
    (tmp_path / "crash.yaml").write_text(EXPERIMENT.format(pid=prod_db.pid))
    done = chaoskit("validate", "--policy", "policy.yaml", "crash.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "note: a run started now would be refused:" in done.stdout
    assert "[policy: windows]" in done.stdout
    as_json = chaoskit(
        "validate", "--policy", "policy.yaml", "--format", "json", "crash.yaml", cwd=tmp_path
    )
    assert as_json.returncode == 0
    [refused] = json.loads(as_json.stdout)["refused_now"]
    assert "outside every allowed window" in refused
    (tmp_path / "open.yaml").write_text("windows: []\n")
    done = chaoskit("validate", "--policy", "open.yaml", "crash.yaml", cwd=tmp_path)
    assert done.returncode == 0 and "note:" not in done.stdout


def test_a_game_day_is_refused_by_the_site_policy_windows_even_when_forced(
    prod_db: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(EXPERIMENT.format(pid=prod_db.pid))
    plan = GameDayPlan.model_validate({"name": "weekly", "experiments": ["a.yaml"]})
    policy = Policy.model_validate(
        {"windows": [{"days": ["tue"], "start": "09:00", "end": "17:00"}]}
    )
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    for force in (False, True):
        with pytest.raises(PlanError, match=r"a.yaml: 2026-11-23T12:00\+00:00 is outside every"):
            asyncio.run(run_plan(plan, tmp_path / "plan.yaml", reports=tmp_path / "reports",
                                 policy=policy, now=monday, force=force))  # fmt: skip
    assert not (tmp_path / "reports").exists()
    assert prod_db.poll() is None
    christmas = Policy.model_validate({"blackouts": [{"start": date(2026, 12, 24)}]})
    morning = datetime(2026, 12, 24, 9, tzinfo=UTC)
    with pytest.raises(PlanError, match="2026-12-24 is a blackout date in UTC"):
        asyncio.run(run_plan(plan, tmp_path / "plan.yaml", reports=tmp_path / "reports",
                             policy=christmas, now=morning))  # fmt: skip


def test_a_run_over_more_hosts_than_the_policy_allows_exits_2_with_nothing_touched(
    tmp_path: Path,
) -> None:
    """Two Toxiproxy servers on hosts h1 and h2 (by their labels); the policy allows one."""
    with proxy_server(["edge-0"]) as east, proxy_server(["edge-0"]) as west:
        (tmp_path / "policy.yaml").write_text("max_blast_radius: {hosts: 1}\n")
        (tmp_path / "hosts.yaml").write_text(
            f"""
version: 1
name: two-hosts
system:
  toxiproxies:
    - {{name: east, url: "{east}", labels: {{host: h1}}}}
    - {{name: west, url: "{west}", labels: {{host: h2}}}}
targets:
  edges: {{kind: proxy, select: "edge-*"}}
load: {{url: "{east}/version", rate: 10/s}}
steady_state: [{{name: errors, of: error_rate}}]
faults: [{{type: latency, target: edges, latency: 1ms}}]
"""
        )
        done = chaoskit(
            "run", "hosts.yaml", "--policy", "policy.yaml", "--reports", "reports", cwd=tmp_path
        )
        listed = [get_json(f"{api}/proxies") for api in (east, west)]
        toxics = [proxy["toxics"] for found in listed for proxy in found.values()]
    assert done.returncode == 2, done.stderr
    assert "would hit targets on 2 hosts (h1, h2), more than the 1 allowed" in done.stderr
    assert toxics == [[], []]


def test_a_toxiproxy_url_that_is_some_other_server_fails_the_bring_up_saying_so(
    tmp_path: Path,
) -> None:
    """An HTTP server that is not Toxiproxy (here: Python's file server) answers /proxies with
    a page, not JSON: the run says what is wrong (exit 6), not an internal error (70)."""
    (port,) = free_ports(1)
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/"), 10, "the file server")
        (tmp_path / "odd.yaml").write_text(
            f"""
version: 1
name: not-toxiproxy
system:
  toxiproxies: [{{name: odd, url: "http://127.0.0.1:{port}"}}]
targets:
  edges: {{kind: proxy, select: "edge-*"}}
load: {{url: "http://127.0.0.1:{port}/", rate: 10/s}}
steady_state: [{{name: errors, of: error_rate}}]
faults: [{{type: latency, target: edges, latency: 1ms}}]
safety: {{abort_when: [{{metric: errors, above: 50%, for: 5s}}]}}
blast_radius: {{count: 1}}
"""
        )
        done = chaoskit("run", "odd.yaml", "--reports", "reports", cwd=tmp_path)
    finally:
        other.kill()
        other.wait(10)
    assert done.returncode == 6, done.stderr
    assert "not with Toxiproxy's map of proxies" in done.stderr
