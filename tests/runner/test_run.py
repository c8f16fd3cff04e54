"""``chaoskit run`` end to end on real systems: a network fault judged, a run the safety valve
aborts, a refusal before anything is touched, and a runner SIGKILLed mid-fault whose watchdog
takes the fault back within 2 s."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from killed_run import KilledRun
from waiting import answers, wait_until

from chaoskit.load import ProbeSeries, RequestSamples
from chaoskit.stack.launcher import free_ports

pytestmark = pytest.mark.slow
CHAOSKIT = [sys.executable, "-m", "chaoskit"]


def chaoskit_run(experiment: Path, reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(reports)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def start_run(experiment: Path, reports: Path) -> subprocess.Popen[bytes]:
    """``chaoskit run`` in the background, its output discarded (the journal tells the story)."""
    return subprocess.Popen(
        [*CHAOSKIT, "run", str(experiment), "--reports", str(reports)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def result_of(reports: Path) -> dict[str, object]:
    [path] = reports.glob("*/result.json")
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


# p50's margin of 50%: the steady-state check refuses a baseline whose second half is slower
# than its first beyond the margin, and on two shared cores a neighbouring test's start made
# a 4 s baseline's p50 drift by up to 35% (1 run in 6); every fault here moves p50 far more.
STACK_RUN = """
version: 1
name: {name}
system: {{stack: {{replicas: 2}}}}
targets: {{backends: {{kind: proxy, select: "backend-*"}}}}
load: {{url: "http://127.0.0.1:${{ports.frontend}}/items", rate: 50/s, timeout: 2s,
        group_header: X-Backend}}
steady_state:
  - {{name: p50, of: latency, quantile: 0.5, margin: 50%}}
  - {{name: errors, of: error_rate, max: 5%}}
  - {{name: live, of: probe, interval: 500ms, min: 1,
      probe: {{type: http, url: "http://127.0.0.1:${{ports.frontend}}/health/live"}}}}
faults:
  - {{type: latency, target: backends, latency: {latency}}}
blast_radius: {{count: {count}, seed: 3, control: {control}}}
phases: {{warmup: 1s, baseline: 4s, fault: 4s, recovery: 3s}}
safety:
  abort_when:
    - {{metric: errors, above: 50%, for: 1s}}
    {extra}
  max_duration: 2m
"""


def test_a_network_fault_is_judged_and_taken_back(tmp_path: Path) -> None:
    """Its load is sent by two worker processes: their answers are tagged and judged as one's."""
    experiment = tmp_path / "latency.yaml"
    text = STACK_RUN.format(
        name="e2e-latency", latency="200ms", count=1, control="concurrent", extra=""
    )
    experiment.write_text(
        text.replace("group_header: X-Backend}", "group_header: X-Backend, workers: 2}")
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    result = result_of(tmp_path / "reports")
    exit_codes = {"held": 0, "deviated": 1, "inconclusive": 4}
    assert done.returncode == exit_codes[str(result["outcome"])], done.stderr
    assert result["schema"] == "chaoskit.result/1"
    verdict = result["verdict"]
    assert isinstance(verdict, dict) and verdict["comparison"] == "concurrent"
    p50 = next(m for m in verdict["metrics"] if m["metric"] == "p50")
    assert p50["verdict"] == "deviated"  # requests through the slowed backend are ~200 ms slower
    events = result["faults"]
    assert isinstance(events, list)
    assert [e["event"] for e in events] == ["inject", "revert"] and events[1]["ok"]
    [draw] = result["draws"].values()  # type: ignore[union-attr]
    assert len(draw["experiment"]) == 1 and len(draw["control"]) == 1
    journal = (tmp_path / "reports").glob("*/journal.jsonl")
    assert json.loads(next(journal).read_text().splitlines()[-1])["event"] == "close"
    [folder] = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    record = result["probes"]["live"]  # type: ignore[index]
    assert record["file"] == "probe-live.arrow" and record["failed"] == 0
    live_readings = ProbeSeries.load(record, folder)
    assert len(live_readings) >= 15  # every 0.5 s
    assert set(live_readings.value.tolist()) == {1.0}  # the frontend stayed up
    requests = RequestSamples.load(result["samples"], folder)  # type: ignore[arg-type]
    assert len(requests) == result["samples"]["requests"] > 100  # type: ignore[index]
    live = next(m for m in verdict["metrics"] if m["metric"] == "live")
    assert live["verdict"] != "deviated" and live["n"][0] >= 7  # judged on its readings
    load = result["load"]
    assert isinstance(load, dict) and load["workers"] == 2 and load["requests"] >= 100
    assert 0 <= load["send_lag_p50"] <= load["send_lag_p99"] <= load["send_lag_max"]


def test_the_valve_aborts_and_everything_is_reverted(tmp_path: Path) -> None:
    experiment = tmp_path / "abort.yaml"
    experiment.write_text(
        STACK_RUN.format(
            name="e2e-abort",
            latency="800ms",
            count=1,
            control="concurrent",
            extra="- {metric: p50, above: 400ms, for: 0s}",  # far above a loaded machine's p50
        )
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    assert done.returncode == 3, done.stderr
    found = re.search(r"p50 \(the experiment group\) was ([\d.]+)ms, above 400ms", done.stdout)
    assert found is not None, done.stdout
    assert float(found.group(1)) > 400  # what the valve knew: requests waiting beyond 400 ms
    result = result_of(tmp_path / "reports")
    safety = result["safety"]
    assert isinstance(safety, dict) and safety["reason"] == "abort_when"
    events = result["faults"]
    assert isinstance(events, list)
    reverts = [e for e in events if e["event"] == "revert"]
    assert len(reverts) == 1 and all(e["ok"] for e in reverts)
    assert all(e["at"] - safety["at"] < 0.5 for e in reverts)  # reverted within 500 ms


def test_a_run_that_breaks_policy_is_refused_before_anything_starts(tmp_path: Path) -> None:
    experiment = tmp_path / "greedy.yaml"
    experiment.write_text(
        STACK_RUN.format(
            name="e2e-greedy", latency="1s", count=2, control="none", extra=""
        ).replace("max_duration: 2m", "max_duration: 2h")
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    assert done.returncode == 2
    assert "refused, nothing was touched" in done.stderr or "policy" in done.stderr
    assert not list((tmp_path / "reports").glob("*/journal.jsonl"))


@pytest.fixture
def proxied_web(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A separately started ``chaoskit proxy`` with a proxy 'web' in front of a web server."""
    [web_port] = free_ports(1)
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(web_port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen(
        [*CHAOSKIT, "proxy", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proxy.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", proxy.stdout.readline())
        assert found is not None
        api = found.group(0)
        created = httpx.post(
            f"{api}/proxies",
            json={"name": "web", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{web_port}"},
            trust_env=False,
        ).json()
        wait_until(lambda: answers(f"http://127.0.0.1:{web_port}/"), 10, "the web server")
        yield api, int(created["listen"].rsplit(":", 1)[1])
    finally:
        for process in (web, proxy):
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        if proxy.stdout is not None:
            proxy.stdout.close()


@pytest.mark.parametrize("seed", [9, 5])  # trial 2 at 1.5 s, trial 3 at 0.6 s
def test_a_sigkilled_runner_leaves_no_toxic_behind(
    tmp_path: Path, proxied_web: tuple[str, int], seed: int
) -> None:
    """Killed at a random moment of one of three trials (in its fault or recovery phase):
    within 2 s the separately started proxy has no toxic left."""
    import random

    api, port = proxied_web
    draw = random.Random(seed)
    trial, moment = draw.randint(1, 3), draw.uniform(0.0, 2.5)
    experiment = tmp_path / "killed.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-killed
system: {{toxiproxy: "{api}"}}
targets: {{web: {{kind: proxy, select: web}}}}
load: {{url: "http://127.0.0.1:{port}/", rate: 20/s}}
steady_state: [{{name: p50, of: latency}}, {{name: errors, of: error_rate}}]
faults: [{{type: latency, target: web, latency: 100ms}}]
blast_radius: {{count: 1}}
hypothesis: {{trials: 3}}
phases: {{warmup: 0s, baseline: 1s, fault: 2s, recovery: 1s}}
safety: {{abort_when: [{{metric: errors, above: 50%, for: 5s}}], max_duration: 5m}}
"""
    )
    reports = tmp_path / "reports"
    runner = KilledRun(experiment, reports)
    toxics = f"{api}/proxies/web/toxics"
    try:
        wait_until(lambda: runner.applied() >= trial, 30, f"the fault of trial {trial}")
        time.sleep(moment)  # the random moment under test, not a synchronisation
    finally:
        runner.kill()
    killed = time.monotonic()
    wait_until(lambda: httpx.get(toxics, trust_env=False).json() == [], 2, "the watchdog's revert")
    assert time.monotonic() - killed < 2


def test_a_sigkilled_runner_leaves_no_paused_process_and_no_system_behind(tmp_path: Path) -> None:
    """Killed at a random moment of the fault phase: within 2 s the watchdog has resumed the
    paused backend, then it stops the stack the runner started."""
    import random

    moment = random.Random(11).uniform(0.5, 3.0)
    experiment = tmp_path / "paused.yaml"
    experiment.write_text(
        """
version: 1
name: e2e-paused
system: {stack: {replicas: 2}}
targets: {backends: {kind: process, select: "backend-*"}}
load: {url: "http://127.0.0.1:${ports.frontend}/items", rate: 20/s}
steady_state: [{name: p50, of: latency}, {name: errors, of: error_rate}]
faults: [{type: pause, target: backends}]
blast_radius: {count: 1, seed: 1}
phases: {warmup: 0s, baseline: 2s, fault: 60s, recovery: 1s}
safety: {abort_when: [{metric: errors, above: 50%, for: 10s}], max_duration: 5m}
"""
    )
    reports = tmp_path / "reports"
    runner = start_run(experiment, reports)

    def paused_pid() -> int | None:
        for path in reports.glob("*/journal.jsonl"):
            for line in path.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "inject":
                    return int(event["fault"]["target"]["ref"]["pid"])
        return None

    try:
        wait_until(lambda: paused_pid() is not None, 30, "the pause")
        pid = paused_pid()
        assert pid is not None
        wait_until(lambda: _state(pid) == "T", 5, "the backend to be stopped")
        time.sleep(moment)  # the random moment under test, not a synchronisation
    finally:
        runner.kill()
        runner.wait()
    killed = time.monotonic()
    wait_until(lambda: _state(pid) != "T", 2, "the watchdog to resume the backend")
    assert time.monotonic() - killed < 2
    [journal] = reports.glob("*/journal.jsonl")
    ports = json.loads((journal.parent / "stack-ports.json").read_text())["ports"]

    def stack_gone() -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", ports["frontend"])) != 0

    wait_until(stack_gone, 15, "the watchdog to stop the stack")

    def events() -> list[str]:
        return [json.loads(line)["event"] for line in journal.read_text().splitlines()]

    wait_until(lambda: "stopped" in events(), 15, "the watchdog to record the stack stopped")
    assert "revert" in events()


def _state(pid: int) -> str:
    """The process state letter (T: stopped; gone counts as X)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat[stat.rindex(")") + 2]


LIVE_PROBE = '{type: http, url: "http://127.0.0.1:${ports.frontend}/health/live"}'


@pytest.mark.parametrize(
    ("probe", "said"),
    [
        pytest.param(  # a typo: it might appear with traffic, so it has until the first fault
            '{type: scrape, url: "http://127.0.0.1:${ports.frontend}/metrics", '
            "metric: frontend_breaker_opn}",
            "probe 'live' gave no reading before the first fault",
            marks=pytest.mark.long,
        ),
        (  # not a metrics page at all: no wait mends it, refused before any traffic
            '{type: scrape, url: "http://127.0.0.1:${ports.frontend}/status", metric: up}',
            "probe 'live' cannot work as written:",
        ),
    ],
    ids=["missing-metric", "not-a-metrics-page"],
)
def test_a_probe_that_cannot_read_refuses_the_run_before_any_fault(
    tmp_path: Path, probe: str, said: str
) -> None:
    experiment = tmp_path / "probe.yaml"
    text = STACK_RUN.format(
        name="e2e-probe", latency="50ms", count=1, control="concurrent", extra=""
    )
    assert LIVE_PROBE in text
    experiment.write_text(text.replace(LIVE_PROBE, probe))
    done = chaoskit_run(experiment, tmp_path / "reports")
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr, done.stderr
    if "opn" in probe:
        assert "has no sample named 'frontend_breaker_opn'; did you mean" in done.stderr
    [journal] = (tmp_path / "reports").glob("*/journal.jsonl")
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert "inject" not in events and events.count("started") == events.count("stopped")


def test_a_target_that_matches_nothing_is_refused(tmp_path: Path) -> None:
    experiment = tmp_path / "nothing.yaml"
    experiment.write_text(
        STACK_RUN.format(
            name="e2e-nothing", latency="50ms", count=1, control="concurrent", extra=""
        ).replace('select: "backend-*"', 'select: "db-*"')
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    assert done.returncode == 2
    assert (
        "target 'backends' (proxy db-*) matches nothing; found: backend-1, backend-2" in done.stderr
    )
    [journal] = (tmp_path / "reports").glob("*/journal.jsonl")
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert "inject" not in events and events.count("started") == events.count("stopped")


def test_a_stale_journal_stops_the_next_run_until_rolled_back(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    skew = tmp_path / "skew"
    skew.write_text("+600.000000\n")  # a clock skew a crashed run left behind
    writer = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from pathlib import Path\n"
            "from chaoskit.drivers.base import AppliedFault, Target\n"
            "from chaoskit.runner.journal import Journal\n"
            "journal = Journal.create(Path(sys.argv[1]), 'crashed')\n"
            "ref = {'pid': 1, 'start': 0, 'faketime': sys.argv[2]}\n"
            "target = Target('process', 'web', {}, ref)\n"
            "journal.injecting(AppliedFault('clock', 'clock_skew', target,\n"
            "    {'file': sys.argv[2], 'seconds': 600.0}, {'file': sys.argv[2]}))\n",
            str(reports / "crashed" / "journal.jsonl"),
            str(skew),
        ],
        check=False,
    )
    assert writer.returncode == 0
    experiment = tmp_path / "next.yaml"
    experiment.write_text(
        STACK_RUN.format(name="e2e-next", latency="50ms", count=1, control="concurrent", extra="")
    )
    refused = chaoskit_run(experiment, reports)
    assert refused.returncode == 2
    assert "an earlier run left something behind" in refused.stderr
    assert "run `chaoskit rollback` first" in refused.stderr
    assert skew.read_text() == "+600.000000\n"  # nothing touched
    rolled = subprocess.run(
        [*CHAOSKIT, "rollback", "--reports", str(reports)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rolled.returncode == 0, rolled.stderr
    assert float(skew.read_text()) == 0.0


@pytest.mark.long
def test_a_crash_over_two_trials_hits_the_restarted_process_and_measures_recovery(
    tmp_path: Path,
) -> None:
    experiment = tmp_path / "crash.yaml"
    experiment.write_text(
        """
version: 1
name: e2e-crash
system: {stack: {replicas: 2}}
targets: {backends: {kind: process, select: "backend-*"}}
load: {url: "http://127.0.0.1:${ports.frontend}/items", rate: 50/s}
steady_state:
  - {name: p50, of: latency, margin: 50%}  # a 4 s baseline's p50 drifts >10% on a busy machine
  - {name: errors, of: error_rate, max: 5%}
faults: [{type: crash, target: backends, signal: SIGKILL, duration: 1s}]
blast_radius: {count: 1, seed: 2}
phases: {warmup: 1s, baseline: 4s, fault: 3s, recovery: 7s}
hypothesis: {trials: 2, recover_within: 5s}
safety: {abort_when: [{metric: errors, above: 50%, for: 3s}], max_duration: 5m}
"""
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    result = result_of(tmp_path / "reports")
    assert result["outcome"] in ("held", "deviated", "inconclusive"), done.stderr
    events = result["faults"]
    assert isinstance(events, list)
    injects = [e for e in events if e["event"] == "inject"]
    assert len(injects) == 2 and injects[0]["target"] == injects[1]["target"]
    [journal] = (tmp_path / "reports").glob("*/journal.jsonl")
    pids = [
        json.loads(line)["fault"]["target"]["ref"]["pid"]
        for line in journal.read_text().splitlines()
        if json.loads(line)["event"] == "inject"
    ]
    assert pids[0] != pids[1]  # trial 2 hit the process the supervisor restarted
    verdict = result["verdict"]
    assert isinstance(verdict, dict)
    recovery = verdict["recovery"]["p50"]
    assert len(recovery["durations"]) == 2


def test_a_sigkilled_runner_leaves_no_pause_balloon_or_skew(tmp_path: Path) -> None:
    """Three faults on one backend — pause, disk full, clock skew — and the runner SIGKILLed at
    a random moment once they are in: within 2 s the backend runs, its tmpfs is empty and its
    clock is true again."""
    import random

    from chaoskit.drivers.balloon import BALLOON, inside

    moment = random.Random(23).uniform(0.2, 2.0)
    experiment = tmp_path / "all.yaml"
    experiment.write_text(
        """
version: 1
name: e2e-three
system: {stack: {replicas: 2, tmpfs: 8MiB, faketime: true}}
targets: {backends: {kind: process, select: "backend-*"}}
load: {url: "http://127.0.0.1:${ports.frontend}/items", rate: 20/s}
steady_state: [{name: p50, of: latency}, {name: errors, of: error_rate}]
faults:
  - {type: disk_full, target: backends, leave: 0B}
  - {type: clock_skew, target: backends, skew: +2h}
  - {type: pause, target: backends}
blast_radius: {count: 1, seed: 4}
phases: {warmup: 0s, baseline: 2s, fault: 60s, recovery: 1s}
safety: {abort_when: [{metric: errors, above: 50%, for: 10s}], max_duration: 5m}
"""
    )
    reports = tmp_path / "reports"
    runner = start_run(experiment, reports)

    def applied() -> list[dict[str, object]]:
        found = []
        for path in reports.glob("*/journal.jsonl"):
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            faults = {e["fault"]["id"]: e["fault"] for e in lines if e["event"] == "inject"}
            found = [faults[e["id"]] for e in lines if e["event"] == "applied"]
        return found

    try:
        wait_until(lambda: len(applied()) == 3, 40, "all three faults")
        time.sleep(moment)  # the random moment under test, not a synchronisation
    finally:
        runner.kill()
        runner.wait()
    killed = time.monotonic()
    faults = {str(f["fault"]): f for f in applied()}
    pid = int(faults["pause"]["target"]["ref"]["pid"])  # type: ignore[index]
    skew_file = Path(faults["clock_skew"]["params"]["file"])  # type: ignore[index]
    tmpfs = str(faults["disk_full"]["params"]["path"])  # type: ignore[index]
    [journal] = reports.glob("*/journal.jsonl")

    def reverted() -> set[str]:
        lines = [json.loads(line) for line in journal.read_text().splitlines()]
        return {e["id"] for e in lines if e["event"] == "revert" and e["ok"]}

    def observed() -> bool:
        # Right after reverting, the watchdog stops the stack: a backend that is gone is not
        # paused and its tmpfs went with it; one still here must run with an empty tmpfs.
        alive = _state(pid) != "X"
        if alive and (_state(pid) == "T" or (inside(pid, tmpfs) / BALLOON).exists()):
            return False
        return float(skew_file.read_text()) == 0.0

    wait_until(lambda: len(reverted()) == 3 and observed(), 2, "the watchdog to revert all three")
    assert time.monotonic() - killed < 2


@pytest.mark.long
def test_sequential_tests_end_the_fault_phase_once_the_answer_is_known(tmp_path: Path) -> None:
    """A 300 ms backend against a concurrent control: the always-valid test sees it within
    seconds, the fault phase (planned at 40 s) ends then, and its verdict is the test's."""
    experiment = tmp_path / "sequential.yaml"
    experiment.write_text(
        STACK_RUN.format(
            name="e2e-sequential", latency="300ms", count=1, control="concurrent", extra=""
        )
        .replace("fault: 4s", "fault: 40s")
        .replace("phases:", "hypothesis: {sequential: true}\nphases:")
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    result = result_of(tmp_path / "reports")
    assert result["outcome"] == "deviated", done.stdout + done.stderr
    [fault] = [p for p in result["phases"] if p["phase"] == "fault"]  # type: ignore[union-attr]
    assert fault["end"] - fault["start"] < 15
    assert "the sequential tests have the answer" in done.stdout + done.stderr
    sequential = result["sequential"]
    assert isinstance(sequential, dict) and sequential["p50"]["verdict"] == "deviated"
    verdict = result["verdict"]
    assert isinstance(verdict, dict)
    p50 = next(m for m in verdict["metrics"] if m["metric"] == "p50")
    assert p50["verdict"] == "deviated" and "sequential test" in p50["reason"]
    events = result["faults"]
    assert isinstance(events, list) and [e["event"] for e in events] == ["inject", "revert"]


def test_a_target_that_vanishes_is_an_outcome_of_the_run_not_a_crash(tmp_path: Path) -> None:
    """A ``pids:`` process that a crash fault kills for good (nothing restarts it): the second
    trial cannot be injected; the run says why and judges what it saw (exit 1), never 70."""
    lonely = subprocess.Popen(["sleep", "600"])
    experiment = tmp_path / "vanish.yaml"
    experiment.write_text(
        f"""
version: 1
name: e2e-vanish
system: {{stack: {{replicas: 1}}}}
targets: {{lonely: {{kind: process, pids: [{lonely.pid}]}}}}
load: {{url: "http://127.0.0.1:${{ports.frontend}}/items", rate: 20/s, timeout: 2s}}
steady_state: [{{name: errors, of: error_rate, max: 5%}}]
faults: [{{type: crash, target: lonely}}]
blast_radius: {{count: 1}}
hypothesis: {{trials: 2}}
phases: {{warmup: 0s, baseline: 2s, fault: 2s, recovery: 1s}}
safety: {{abort_when: [{{metric: errors, above: 50%, for: 2s}}], max_duration: 2m}}
"""
    )
    try:
        done = chaoskit_run(experiment, tmp_path / "reports")
    finally:
        lonely.kill()
        lonely.wait()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "trial 2 was not run" in done.stdout and f"pid {lonely.pid}" in done.stdout
    result = result_of(tmp_path / "reports")
    events = result["faults"]
    assert isinstance(events, list) and [e["event"] for e in events][-1] == "gone"
    assert "Traceback" not in done.stderr


def test_a_system_that_does_not_come_up_is_exit_6_not_a_bug(tmp_path: Path) -> None:
    """The system under test broken before we start (its process exits at once): the run says
    so and exits 6 — not 70, which means a bug in chaoskit."""
    experiment = tmp_path / "broken.yaml"
    experiment.write_text(
        """
version: 1
name: e2e-broken
system:
  processes:
    - {name: api, command: ["false"], ready: {http: "http://127.0.0.1:9/health", timeout: 5s}}
targets: {api: {kind: process, select: api}}
load: {url: "http://127.0.0.1:9/", rate: 5/s, timeout: 1s}
steady_state: [{name: errors, of: error_rate, max: 5%}]
faults: [{type: pause, target: api}]
blast_radius: {count: 1}
phases: {warmup: 0s, baseline: 2s, fault: 2s, recovery: 1s}
safety: {abort_when: [{metric: errors, above: 50%, for: 2s}], max_duration: 2m}
"""
    )
    done = chaoskit_run(experiment, tmp_path / "reports")
    assert done.returncode == 6, done.stdout + done.stderr
    assert "the system did not come up" in done.stderr and "Traceback" not in done.stderr
