"""The outage matrix: `chaoskit run` against a small real HTTP service (tests/outage/service.py:
a frontend in front of two backends, each behind the proxy chaoskit places), one experiment per
row, with and without an abort condition, with and without a concurrent control group. Each
run takes about 17 s; the whole matrix runs under `nox -s outage` (and in CI).

Every row asserts the outcome and the exit code, and that the other outputs tell the same
story: junit.xml, summary.md, result.json's valve record, and `chaoskit gate`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
CHAOSKIT = [sys.executable, "-m", "chaoskit"]
EXIT = {"held": 0, "deviated": 1, "aborted": 3, "not_steady": 5}


@dataclass(frozen=True)
class Row:
    """How the service behaves, what breaks it, and the outcomes without and with a valve."""

    during: str
    after: str = "ok"
    errors: float = 0.0
    mode: str = "refuse"
    plain: str = "deviated"
    guarded: str = "aborted"
    why: str = "errors"
    """What must be named: ``errors`` (a deviated metric), ``recovery`` or ``steady``."""


ROWS = {
    "healthy": Row("fallback", plain="held", guarded="held", why=""),
    "refused": Row("error"),
    "hanging": Row("error", mode="hang"),
    "still-failing": Row("error", after="latch", why="recovery"),
    "slow-to-recover": Row("fallback", after="slow:6", why="recovery"),
    "flapping": Row("fallback", after="flap:1.5:2", why="recovery"),
    "broken-before": Row(
        "error", errors=1.0, plain="not_steady", guarded="not_steady", why="steady"
    ),
    "partial": Row("partial:0.4"),
    "inside-the-slo": Row("fallback", errors=0.01, plain="held", guarded="held", why=""),
}


def experiment(name: str, row: Row, *, guarded: bool, concurrent: bool) -> str:
    """The experiment file: errors above 20 % for 1 s aborts when ``guarded``; with a
    concurrent control one backend of two is hit, else both."""
    service = str(HERE / "service.py")
    python = sys.executable
    frontend = [
        python, service, "frontend", "${ports.frontend}", "--backend",
        "backend-a=${ports.front_a}", "--backend", "backend-b=${ports.front_b}",
        "--during", row.during, "--after", row.after,
        "--errors", str(row.errors),
    ]  # fmt: skip
    processes = [
        {"name": f"backend-{b}", "command": [python, service, "backend", f"${{ports.backend_{b}}}"],
         "ready": {"http": f"http://127.0.0.1:${{ports.backend_{b}}}/health"}}
        for b in "ab"
    ] + [{"name": "frontend", "command": frontend,
          "ready": {"http": "http://127.0.0.1:${ports.frontend}/health"}}]  # fmt: skip
    load: dict[str, Any] = {"url": "http://127.0.0.1:${ports.frontend}/", "rate": "80/s",
                            "timeout": "1s"}  # fmt: skip
    if concurrent:
        load["group_header"] = "X-Backend"
    doc = {
        "version": 1,
        "name": name,
        "system": {
            "ports": ["frontend", "backend_a", "backend_b", "front_a", "front_b"],
            "processes": processes,
        },
        "targets": {
            "backends": {
                "kind": "process",
                "select": "backend-*",
                "port": {"backend-a": "backend_a", "backend-b": "backend_b"},
                "listen": {"backend-a": "front_a", "backend-b": "front_b"},
            }
        },
        "load": load,
        "steady_state": [
            {"name": "p50", "of": "latency", "margin": "100%"},
            {"name": "errors", "of": "error_rate", "max": "5%"},
        ],
        "faults": [{"type": "partition", "target": "backends", "mode": row.mode}],
        "blast_radius": {"count": 1, "seed": 3, "control": "concurrent"}
        if concurrent
        else {"count": 2},
        "phases": {"warmup": "1s", "baseline": "4s", "fault": "4s", "recovery": "7s"},
        "hypothesis": {"recover_within": "3s"},
        "safety": {
            "abort_when": [{"metric": "errors", "above": "20%", "for": "1s"}] if guarded else [],
            "max_duration": "2m",
        },
    }
    return json.dumps(doc, indent=1)


def cases() -> list[Any]:
    found = []
    for name in ROWS:
        for guarded in (False, True):
            for concurrent in (False, True):
                label = (
                    f"{name}-{'guarded' if guarded else 'unguarded'}-"
                    f"{'concurrent' if concurrent else 'before-after'}"
                )
                found.append(pytest.param(name, guarded, concurrent, id=label))
    return found


@pytest.mark.outage
@pytest.mark.parametrize(("name", "guarded", "concurrent"), cases())
def test_the_outcome_tells_the_truth(
    tmp_path: Path, name: str, guarded: bool, concurrent: bool
) -> None:
    row = ROWS[name]
    want = row.guarded if guarded else row.plain
    path = tmp_path / f"{name}.json"
    path.write_text(experiment(f"outage-{name}", row, guarded=guarded, concurrent=concurrent))
    reports = tmp_path / "reports"
    policy = HERE / "policy.yaml"
    done = subprocess.run(
        [*CHAOSKIT, "run", str(path), "--reports", str(reports), "--policy", str(policy)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    context = f"{done.stdout}\n{done.stderr[-3000:]}"
    [result_path] = reports.glob("*/result.json")
    result = json.loads(result_path.read_text())
    assert result["outcome"] == want, context
    assert done.returncode == EXIT[want], context
    injected = [e for e in result["faults"] if e["event"] == "inject"]
    reverted = [e for e in result["faults"] if e["event"] == "revert"]
    assert len(reverted) == len(injected) and all(e["ok"] for e in reverted), context
    verdict = result["verdict"] or {}
    if row.why == "errors" and want == "deviated":
        errors = next(m for m in verdict["metrics"] if m["metric"] == "errors")
        assert errors["verdict"] == "deviated", context
    if row.why == "recovery" and want == "deviated":
        assert any(f["metric"] == "errors" for f in verdict["recovery_failures"]), context
    if want == "not_steady":
        assert not injected, context  # nothing was injected into a broken system
        assert result["steady_state"]["problems"], context
    if want == "aborted":
        assert result["safety"]["reason"] == "abort_when", context
        [condition] = result["valve"]["conditions"]
        assert condition["tripped"] and condition["watched"] == (
            "the experiment group" if concurrent else "all requests"
        ), context
    if guarded and want == "held":
        [condition] = result["valve"]["conditions"]
        assert not condition["tripped"] and condition["checks"] > 0, context
    _outputs_agree(result_path, result, want)


def _outputs_agree(result_path: Path, result: dict[str, Any], want: str) -> None:
    """junit.xml, summary.md and the gate say what result.json says."""
    folder = result_path.parent
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    bad = int(suite.get("failures", "0")) + int(suite.get("errors", "0"))
    assert (bad == 0) == (want == "held"), f"junit: {bad} failures/errors for {want}"
    words = {"held": "HELD", "deviated": "DEVIATED", "aborted": "ABORTED",
             "not_steady": "NOT STEADY"}  # fmt: skip
    assert f"**{words[want]}**" in (folder / "summary.md").read_text()
    gate = subprocess.run(
        [*CHAOSKIT, "gate", str(result_path), "--reports", str(folder.parent)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (gate.returncode == 0) == (want == "held"), gate.stdout + gate.stderr


@pytest.mark.outage
def test_no_second_trial_is_injected_into_a_system_still_broken(tmp_path: Path) -> None:
    """A breaker that never closes, two trials: trial 1 leaves the system failing, so trial 2
    is not run, and the run is DEVIATED saying why."""
    doc = json.loads(experiment("outage-two-trials", ROWS["still-failing"], guarded=False,
                                concurrent=False))  # fmt: skip
    doc["hypothesis"]["trials"] = 2
    path = tmp_path / "two.json"
    path.write_text(json.dumps(doc))
    reports = tmp_path / "reports"
    done = subprocess.run(
        [*CHAOSKIT, "run", str(path), "--reports", str(reports), "--policy",
         str(HERE / "policy.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    [result_path] = reports.glob("*/result.json")
    result = json.loads(result_path.read_text())
    assert done.returncode == 1 and result["outcome"] == "deviated", done.stdout
    injected = [e for e in result["faults"] if e["event"] == "inject"]
    assert len(injected) == 2  # both backends, in trial 1 only
    assert "trial 2 was not run" in result["verdict"]["stopped_early"]
    assert "stopped early: trial 2 was not run" in done.stdout
