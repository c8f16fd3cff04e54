"""The Docker examples run for real, end to end, with their phases shortened through their
variables: the containers come up, the fault goes in and comes out, and the run ends with a
verdict (not an error, not an abort) and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
CHAOSKIT = [sys.executable, "-m", "chaoskit"]
EXAMPLES = Path(__file__).resolve().parent.parent / "experiments" / "docker"
SHORT = {
    "container-partition.yaml": {
        "warmup": "1s", "baseline": "4s", "fault": "4s", "cut": "2s", "recovery": "3s",
    },
    "container-crash.yaml": {
        "warmup": "1s", "baseline": "4s", "fault": "3s", "recovery": "8s",
        "recover_within": "6s", "trials": "1",
    },
}  # fmt: skip
CONTAINERS = {
    "container-partition.yaml": ["api-1", "api-2"],
    "container-crash.yaml": ["frontend", "backend-1", "backend-2", "backend-3"],
}


@pytest.mark.parametrize("example", sorted(SHORT))
def test_a_docker_example_runs_to_a_verdict(
    tmp_path: Path, docker_client: Any, stack_image: str, example: str
) -> None:
    assert sorted(SHORT) == sorted(p.name for p in EXAMPLES.glob("*.yaml"))  # none left out
    variables = [
        arg for name, value in SHORT[example].items() for arg in ("--var", f"{name}={value}")
    ]
    reports = tmp_path / "reports"
    done = subprocess.run(
        [*CHAOSKIT, "run", str(EXAMPLES / example), *variables, "--reports", str(reports)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    [path] = reports.glob("*/result.json")
    result = json.loads(path.read_text())
    assert result["outcome"] in ("held", "deviated", "inconclusive"), done.stdout + done.stderr
    assert done.returncode == {"held": 0, "deviated": 1, "inconclusive": 4}[result["outcome"]]
    events = result["faults"]
    injects = [e for e in events if e["event"] == "inject"]
    reverts = [e for e in events if e["event"] == "revert"]
    trials = int(SHORT[example].get("trials", "1"))
    assert len(injects) == len(reverts) == trials and all(e["ok"] for e in reverts)
    journal = [
        json.loads(line) for line in (path.parent / "journal.jsonl").read_text().splitlines()
    ]
    started = {e["part"]["key"] for e in journal if e["event"] == "started"}
    stopped = {e["key"] for e in journal if e["event"] == "stopped"}
    assert started and started == stopped
    assert journal[-1]["event"] == "close"
    names = "|".join(CONTAINERS[example])
    left = docker_client.containers.list(all=True, filters={"name": f"^/?({names})$"})
    assert left == []  # the run's containers are gone
