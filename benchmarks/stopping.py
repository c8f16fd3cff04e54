"""How a run ends when a person (or its ground) stops it: from the stop to every fault being
reverted, and to the process exiting with every report written.

Stops, each ``--tries`` times, at a random moment of the fault phase of a run against a
separately started ``chaoskit proxy`` holding the run's one fault (a 1 ms latency on a proxy
the load does not use, so the fault is real and has to be taken back):

- ``sigint``, ``sigterm``, ``sighup``: one signal to the runner.
- ``sigint×2``: two Ctrl-C, the second 0.2 s after the first (it must change nothing).
- ``halt``: ``chaoskit halt`` from another process, with the experiment declaring its own
  kill-switch file (the one ``halt`` does not create).
- ``watchdog``: the runner's watchdog is SIGKILLed; the runner must notice and stop.
- ``sigkill``: the runner is SIGKILLed; its watchdog must revert from outside (target: within
  2 s; the runner exits 137 and, killed, writes nothing).
- ``stall10s``: the runner is frozen (SIGSTOP) for 10 s, the worst stall a busy or swapping
  machine causes, then thawed and stopped with SIGINT: the watchdog must not take it for hung
  (with the default 30 s lease) and the run must end as any stopped run does.

"Reverted" is seen from outside (the proxy has no toxic left), "exit" is the runner's exit;
every try but sigkill must exit 3 with result.json, report.html, junit.xml, summary.md and a
history entry. Targets: reverted within 500 ms at p99 (the valve looks ten times a second; 2 s
for sigkill); all as due in every try.

Run:  python benchmarks/stopping.py [--tries 10] [--stops sigint,halt]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

EXPERIMENT = """
version: 1
name: stopping-{stop}
system: {{toxiproxy: "{api}"}}
targets: {{side: {{kind: proxy, select: side}}}}
load: {{url: "http://127.0.0.1:{port}/", rate: 50/s, timeout: 1s}}
steady_state: [{{name: errors, of: error_rate}}]
faults: [{{type: latency, target: side, latency: 1ms}}]
blast_radius: {{count: 1}}
phases: {{warmup: 0s, baseline: 2s, fault: 60s, recovery: 0s}}
safety:
  abort_when: [{{metric: errors, above: 50%, for: 2s}}]
  max_duration: 5m
  kill_switch: {{file: "{kill_file}"}}
"""
POLICY = """
version: 1
max_blast_radius: {fraction: 100%}
windows: []
"""
STOPS = ("sigint", "sigint×2", "sigterm", "sighup", "halt", "watchdog", "sigkill", "stall10s")
TARGET_MS = {"sigkill": 2000.0, "stall10s": 2000.0}
"""Reverted by then at p99; 500 ms for the others. A thawed runner first works off 10 s of
backlog (every send it owed, as an open-loop generator must), so its stop takes longer."""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def watchdog_of(journal: Path) -> int:
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chaoskit.runner.watchdog" in argv and str(journal).encode() in argv:
            return int(proc.name)
    raise RuntimeError(f"no watchdog for {journal}")


def stop_it(stop: str, runner: subprocess.Popen[bytes], reports: Path) -> float:
    """Stop the run; the moment the stop was given (for halt: the HALT file, not the start
    of the halt command)."""
    given = time.monotonic()
    if stop == "stall10s":
        runner.send_signal(signal.SIGSTOP)
        time.sleep(10.0)  # the stall is the scenario
        runner.send_signal(signal.SIGCONT)
        if runner.poll() is not None:
            raise RuntimeError(f"the stalled runner was killed ({runner.returncode})")
        given = time.monotonic()
        runner.send_signal(signal.SIGINT)
        return given
    if stop.startswith("sig"):
        runner.send_signal(getattr(signal, stop.upper().removesuffix("×2")))
        if stop.endswith("×2"):  # a second Ctrl-C 0.2 s later, while the first is handled
            threading.Timer(0.2, runner.send_signal, [signal.SIGINT]).start()
        return given
    [journal] = reports.glob("*/journal.jsonl")
    if stop == "halt":
        subprocess.Popen(
            [sys.executable, "-m", "chaoskit", "halt", "--reports", str(reports), "--wait", "0"],
            stdout=subprocess.DEVNULL,
        )
        while not (journal.parent / "HALT").exists():
            time.sleep(0.002)
        return time.monotonic()
    os.kill(watchdog_of(journal), signal.SIGKILL)
    return given


def one_try(
    stop: str, api: str, port: int, work: Path, rng: random.Random
) -> tuple[float, float, bool]:
    """(stop → reverted, stop → exit, everything written) for one run."""
    reports = Path(tempfile.mkdtemp(prefix="reports-", dir=work))
    experiment = work / "stopping.yaml"
    experiment.write_text(
        EXPERIMENT.format(stop=stop.replace("×", "x"), api=api, port=port,
                          kill_file=work / "never-created")
    )  # fmt: skip
    toxics = f"{api}/proxies/side/toxics"
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports),
         "--policy", str(work / "policy.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not httpx.get(toxics, trust_env=False).json():
        if runner.poll() is not None:
            raise RuntimeError(f"the run ended ({runner.returncode}) before its fault")
        time.sleep(0.01)
    time.sleep(rng.uniform(0.3, 1.0))  # a random moment of the fault phase
    stopped = stop_it(stop, runner, reports)
    while httpx.get(toxics, trust_env=False).json():
        time.sleep(0.002)
    reverted = time.monotonic() - stopped
    code = runner.wait(120)
    exited = time.monotonic() - stopped
    [folder] = [p.parent for p in reports.glob("*/journal.jsonl")]
    if stop == "sigkill":  # nothing can be written by a killed process: the exit is the record
        return reverted, exited, code == -signal.SIGKILL
    files = ("result.json", "report.html", "junit.xml", "summary.md")
    with sqlite3.connect(reports / "history.db") as db:
        recorded = db.execute("select count(*) from runs").fetchone() == (1,)
    written = code == 3 and recorded and all((folder / name).is_file() for name in files)
    return reverted, exited, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--stops", default=",".join(STOPS))
    args = parser.parse_args()
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="chaoskit-stopping-"))
    (work / "policy.yaml").write_text(POLICY)
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    proxy = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    rows: dict[str, list[tuple[float, float, bool]]] = {}
    try:
        assert web.stdout is not None
        assert proxy.stdout is not None
        port = int(re.search(r"port (\d+)", web.stdout.readline()).group(1))  # type: ignore[union-attr]
        api = re.search(r"http://127\.0\.0\.1:\d+", proxy.stdout.readline()).group(0)  # type: ignore[union-attr]
        side = {"name": "side", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}  # unused
        httpx.post(f"{api}/proxies", json=side, trust_env=False).raise_for_status()
        for stop in args.stops.split(","):
            rows[stop] = [one_try(stop, api, port, work, rng) for _ in range(args.tries)]
    finally:
        for process in (proxy, web):
            process.terminate()
            process.wait()
    print(f"stopping a run, {args.tries} tries each; 50 requests/s, one toxic applied")
    print(
        f"{'stop':9} {'reverted median':>16} {'p99':>6} {'max':>6} {'exit median':>12} "
        f"{'max':>6} {'all as due':>12}  target"
    )
    for stop, found in rows.items():
        reverted = [r * 1000 for r, _, _ in found]
        exited = [e for _, e, _ in found]
        written = sum(w for _, _, w in found)
        p99 = percentile(reverted, 0.99)
        target = TARGET_MS.get(stop, 500.0)
        verdict = "met" if p99 <= target and written == len(found) else "NOT met"
        print(
            f"{stop:9} {statistics.median(reverted):13.0f} ms {p99:6.0f} {max(reverted):6.0f} "
            f"{statistics.median(exited):10.1f} s {max(exited):6.1f} "
            f"{written:>7}/{len(found):<4}  p99 <= {target:.0f} ms, all as due: {verdict}"
        )


if __name__ == "__main__":
    main()
