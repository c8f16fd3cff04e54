"""Experiment files as pytest tests, as docs/pytest.md shows them (pytester, real runs): skips
and failures name the experiment file's ``line:column``, never the plugin's own line; reports
go under a pytest temporary folder, or ``--chaos-report-dir``, never into the working folder."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent


def _web_and_idle(name: str, folder: Path) -> str:
    """An experiment's head: a local web server to load, and an idle process to fault."""
    python = sys.executable
    return f"""version: 1
name: {name}
system:
  ports: [web]
  processes:
    - name: web
      command: ["{python}", "-m", "http.server", "--bind", "127.0.0.1", "${{ports.web}}"]
      cwd: "{folder}"
      ready: {{http: "http://127.0.0.1:${{ports.web}}/"}}
    - name: idle
      command: ["sleep", "600"]
targets:
  web: {{kind: process, select: web}}
  idle: {{kind: process, select: idle}}
"""


def zero_experiment(name: str, folder: Path, fault: str = "{type: pause, target: idle}") -> str:
    """An experiment that is INCONCLUSIVE every time, in about three seconds: its one metric, a
    probe that always reads 0, cannot be compared as a ratio. ``fault`` pauses an idle process."""
    rest = f"""load: {{url: "http://127.0.0.1:${{ports.web}}/", rate: 20/s, timeout: 2s}}
steady_state:
  - {{name: zero, of: probe, interval: 100ms, probe: {{type: command, command: ["true"]}}}}
faults: [{fault}]
phases: {{warmup: 0s, baseline: 500ms, fault: 500ms, recovery: 0s}}
"""
    return _web_and_idle(name, folder) + rest


def aborted_experiment(name: str, folder: Path) -> str:
    """An experiment the safety valve ABORTS every time, in about three seconds: the web
    server is paused, so every request times out."""
    rest = """load: {url: "http://127.0.0.1:${ports.web}/", rate: 20/s, timeout: 100ms}
steady_state:
  - {name: errors, of: error_rate, max: 5%}
faults: [{type: pause, target: web}]
phases: {warmup: 0s, baseline: 500ms, fault: 3s, recovery: 0s}
safety:
  abort_when:
    - {metric: errors, above: 50%, for: 200ms}
"""
    return _web_and_idle(name, folder) + rest


ONE_FAULT = """
def test_one_fault(chaos):
    chaos.proxy("somewhere", upstream="127.0.0.1:9")
    with chaos.latency("somewhere", "10ms"):
        pass
"""


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that holds ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def located(path: Path, line: int, rest: str) -> str:
    """A regex for ``chaoskit validate``'s form: ``<file>:<line>:<column>: <rest>``."""
    return rf"{re.escape(path.name)}:{line}:\d+: {re.escape(rest)}"


@pytest.mark.slow
def test_an_inconclusive_skip_names_its_line_and_reports_go_to_pytests_temp_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    zero = pytester.makefile(".yaml", zero=zero_experiment("zero", pytester.path))
    aborted = pytester.makefile(".yaml", aborted=aborted_experiment("aborted", pytester.path))
    pytester.makepyfile(test_fault=ONE_FAULT)
    temp = pytester.path / "temp"  # pytest's temporary root for the inner session
    monkeypatch.setenv("PYTEST_DEBUG_TEMPROOT", str(temp))
    monkeypatch.setenv("COLUMNS", "300")  # the short summary's lines in full
    temp.mkdir()
    result = pytester.run(sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1, failed=1)
    metric = line_of(zero, "name: zero, of: probe")
    result.stdout.re_match_lines(
        [rf"SKIPPED \[1\] zero\.yaml:{metric}: INCONCLUSIVE: .*",
         located(zero, metric, "steady_state[0]: zero: inconclusive — readings of zero"),
         r"FAILED aborted\.yaml::aborted - " + located(aborted, line_of(aborted, "above: 50%"),
                                                       "safety.abort_when[0]: aborted: errors")]
    )  # fmt: skip
    assert "pytest_plugin" not in result.stdout.str()  # no line of the plugin is named
    assert not (pytester.path / "reports").exists()
    (reports,) = temp.glob("pytest-of-*/pytest-[0-9]*/chaos-reports")
    assert len(list(reports.glob("*-zero-*/report.html"))) == 1
    assert len(list(reports.glob("*-aborted-*/report.html"))) == 1
    assert (reports / "history.db").is_file()
    assert len(list(reports.glob("pytest-*/journal.jsonl"))) == 1  # the chaos fixture's
    result.stdout.fnmatch_lines([f"chaoskit reports: {reports}"])


POLICY = "version: 1\nallowed_fault_types: [pause]\n"


@pytest.mark.slow
def test_failures_name_their_line_and_reports_go_under_the_given_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the short summary's lines in full
    zero = pytester.makefile(".yaml", zero=zero_experiment("zero", pytester.path))
    bad = pytester.makefile(".yaml", bad=zero_experiment("bad", pytester.path).replace(
        "interval: 100ms", "interval: 1ms"))  # fmt: skip
    refused = pytester.makefile(".yaml", refused=zero_experiment(
        "refused", pytester.path, fault="{type: crash, target: idle}"))  # fmt: skip
    pytester.makefile(".yaml", policy=POLICY)
    pytester.makepyfile(test_fault=ONE_FAULT)
    result = pytester.runpytest_subprocess(
        "-ra", "-p", "no:cacheprovider", "--chaos-report-dir", "given",
        "--chaos-inconclusive", "fail", "--chaos-policy", "policy.yaml",
    )  # fmt: skip
    result.assert_outcomes(passed=1, failed=3)
    metric = line_of(zero, "name: zero, of: probe")
    # in order, not adjacent: under CI=true pytest prints each whole message in the summary
    result.stdout.re_match_lines(
        [
            r"FAILED bad\.yaml::bad - "
            + located(bad, line_of(bad, "of: probe"), "steady_state[0]: probe 'interval'"),
            r"FAILED refused\.yaml::refused - "
            + located(refused, line_of(refused, "faults:"), "faults[0].type: crash faults are not"),
            r"FAILED zero\.yaml::zero - " + located(zero, metric, "steady_state[0]: zero: incon"),
        ],
    )
    assert "pytest_plugin" not in result.stdout.str()  # no line of the plugin is named
    assert not (pytester.path / "reports").exists()
    given = pytester.path / "given"
    assert len(list(given.glob("*-zero-*/report.html"))) == 1
    assert (given / "history.db").is_file()
    assert len(list(given.glob("pytest-*/journal.jsonl"))) == 1
    # A run's result.json is no experiment, though it has faults and steady_state at the top.
    collected = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    collected.stdout.no_fnmatch_line("*result.json*")


def test_pytest_experiments_collects_every_experiment_file_there(
    pytester: pytest.Pytester,
) -> None:
    experiments = ROOT / "experiments"
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", str(experiments))
    shown = {line.split("::")[0] for line in result.stdout.lines if "::" in line}
    files = {p for p in experiments.rglob("*") if p.suffix in {".yaml", ".json", ".toml"}}
    plans = set((experiments / "gamedays").iterdir())  # game-day plans, not experiments
    assert shown == {str(p.relative_to(ROOT)) for p in files - plans}
