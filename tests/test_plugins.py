"""Plugins through entry points, end to end: the example package under examples/plugins/ is
built and installed (pip, into a folder of its own on PYTHONPATH, so the rest of the suite
sees no plugin), then ``chaoskit plugins``, ``schema``, ``validate`` and ``run`` use its fault
type, driver, probe type and report without chaoskit being edited, and its fault is reverted
by the watchdog after the runner is SIGKILLed, like a built-in one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "chaoskit-noisy-neighbour"

pytestmark = pytest.mark.xdist_group("plugins")


def install(package: Path, into: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", "--target", str(into), str(package)],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def plugged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a chaoskit with the example plugin installed."""
    into = tmp_path_factory.mktemp("site")
    install(EXAMPLE, into)
    return {**os.environ, "PYTHONPATH": str(into), "CHAOSKIT_POLICY": ""}


def chaoskit(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def experiment(folder: Path, fault_phase: str = "3s") -> Path:
    path = folder / "noisy.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: noisy
        system:
          ports: [web]
          processes:
            - name: web
              command: ["{sys.executable}", "-m", "http.server", "--bind", "127.0.0.1",
                        "${{ports.web}}"]
              cwd: "{folder}"
              ready: {{http: "http://127.0.0.1:${{ports.web}}/"}}
        targets:
          web: {{kind: process, select: web}}
        load: {{url: "http://127.0.0.1:${{ports.web}}/", rate: 20/s, timeout: 2s}}
        steady_state:
          - {{name: p50, of: latency, margin: 50%}}
          - {{name: errors, of: error_rate, max: 5%}}
          - {{name: load, of: probe, interval: 250ms, max: 1000, probe: {{type: loadavg}}}}
        faults: [{{type: cpu_hog, target: web, workers: 1}}]
        blast_radius: {{count: 1, seed: 1}}
        phases: {{warmup: 1s, baseline: 3s, fault: {fault_phase}, recovery: 1s}}
        safety: {{abort_when: [{{metric: errors, above: 50%, for: 2s}}], max_duration: 5m}}
        """)
    )
    return path


def hogs() -> list[int]:
    """Busy workers of the example's cpu_hog fault, anywhere on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chaoskit-cpu-hog" in argv and entry.name.isdigit():
            found.append(int(entry.name))
    return found


@pytest.fixture
def no_hogs_left() -> Iterator[None]:
    yield
    for pid in hogs():  # a failed test must not leave busy loops behind
        os.kill(pid, signal.SIGKILL)


def test_without_plugins_chaoskit_says_none_are_installed() -> None:
    done = chaoskit("plugins", env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no plugins installed")


def test_plugins_lists_what_the_example_adds(plugged: dict[str, str]) -> None:
    done = chaoskit("plugins", "--format", "json", env=plugged)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(done.stdout)}
    assert set(rows) == {
        ("fault type", "cpu_hog"), ("driver", "cpu_hog"),
        ("probe type", "loadavg"), ("report", "verdicts.csv"),
    }  # fmt: skip
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert rows["fault type", "cpu_hog"]["package"] == "chaoskit-noisy-neighbour 0.1.0"


def test_the_schema_and_validate_know_the_plugin_types(
    plugged: dict[str, str], tmp_path: Path
) -> None:
    schema = chaoskit("schema", "experiment", env=plugged)
    assert schema.returncode == 0, schema.stderr
    text = schema.stdout
    assert '"cpu_hog"' in text and '"loadavg"' in text and '"workers"' in text
    path = experiment(tmp_path)
    done = chaoskit("validate", str(path), env=plugged)
    assert done.returncode == 0, done.stdout + done.stderr
    path.write_text(path.read_text().replace("workers: 1", "workerz: 1"))
    done = chaoskit("validate", str(path), env=plugged)
    assert done.returncode == 2
    assert "faults[0].workerz: unknown key 'workerz'; did you mean 'workers'?" in done.stdout


@pytest.mark.usefixtures("no_hogs_left")
def test_a_run_applies_the_plugin_fault_reads_its_probe_and_writes_its_report(
    plugged: dict[str, str], tmp_path: Path
) -> None:
    path = experiment(tmp_path)
    done = chaoskit("run", str(path), "--reports", str(tmp_path / "reports"), env=plugged)
    assert done.returncode in (0, 1, 4), done.stdout + done.stderr  # held, deviated, inconclusive
    [result_path] = (tmp_path / "reports").glob("*/result.json")
    result = json.loads(result_path.read_text())
    events = [(e["event"], e.get("fault"), e.get("ok")) for e in result["faults"]]
    assert events == [("inject", "cpu_hog", None), ("revert", None, True)]
    assert result["probes"]["load"]["readings"] > 10
    csv = (result_path.parent / "verdicts.csv").read_text().splitlines()
    assert csv[0] == "run,outcome,metric,verdict"
    assert [line.split(",")[2] for line in csv[1:]] == ["p50", "errors", "load"]
    assert hogs() == []


@pytest.mark.usefixtures("no_hogs_left")
def test_a_plugin_fault_is_reverted_by_the_watchdog_after_the_runner_is_sigkilled(
    plugged: dict[str, str], tmp_path: Path
) -> None:
    path = experiment(tmp_path, fault_phase="60s")
    reports = tmp_path / "reports"
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "run", str(path), "--reports", str(reports)],
        env=plugged, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: len(hogs()) == 1, 60, "the cpu_hog worker")
    finally:
        runner.kill()
        runner.wait()
    [journal] = reports.glob("*/journal.jsonl")

    def reverts() -> list[bool]:
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        return [e["ok"] for e in lines if e["event"] == "revert"]

    wait_until(lambda: bool(reverts()), 15, "the watchdog to revert the cpu_hog fault")
    assert reverts() == [True]
    assert hogs() == []


def test_a_plugin_that_is_not_fit_is_set_aside_and_named(
    plugged: dict[str, str], tmp_path: Path
) -> None:
    package = tmp_path / "broken"
    (package / "src" / "broken_plugin").mkdir(parents=True)
    (package / "src" / "broken_plugin" / "__init__.py").write_text(
        "from typing import Literal\n"
        "from chaoskit.model import FaultBase\n"
        "class Latency(FaultBase):\n"
        "    DRIVERS = {'proxy': 'toxiproxy'}\n"
        "    type: Literal['latency']\n"
    )
    (package / "pyproject.toml").write_text(
        textwrap.dedent("""\
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "broken-plugin"
        version = "1.0"
        [project.entry-points."chaoskit.faults"]
        latency = "broken_plugin:Latency"
        [project.entry-points."chaoskit.probes"]
        nothing = "broken_plugin:Missing"
        [tool.hatch.build.targets.wheel]
        packages = ["src/broken_plugin"]
        """)
    )
    into = tmp_path / "site"
    install(package, into)
    env = {**plugged, "PYTHONPATH": f"{plugged['PYTHONPATH']}:{into}"}
    done = chaoskit("plugins", env=env)
    assert done.returncode == 2
    assert "NOT USED: type 'latency' is taken (built in, or by another plugin)" in done.stdout
    assert "NOT USED: cannot be loaded: AttributeError" in done.stdout
    checked = chaoskit("validate", "--no-policy", "experiments/quickstart.yaml", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
