"""Long runs at a production-like rate: the runner's peak memory, the samples file's size and
the time to draw report.html, for runs of several lengths, and how each grows per million
requests.

Each run is a real ``chaoskit run`` at 2,000 requests/s against a trivial HTTP server that
sustains it on this machine: two worker processes of ``benchmarks/_trivial_server.py`` on one
port (SO_REUSEPORT), a fixed keep-alive answer. The run has a 60 s baseline, then trials of a
30 s fault phase (one worker paused for 2 s, as a GC pause would) and a 30 s recovery, as many
as fit the length asked.

Targets (issue 18): the runner's peak RSS <= 250 MB at 20 minutes and the same within 10 % at
2 and 20 minutes; report.html from a 20-minute run in <= 10 s and <= 2 MB.

Peak RSS is the kernel's high-water mark of the ``chaoskit run`` process: VmHWM from
/proc/<pid>/status while it runs, and ru_maxrss from wait4() when it exits (which also covers
the processes it started; the servers stay far below it). "phases RSS" is its highest VmRSS
until the last recovery phase ends, before the verdict and the reports: the difference is what
the end of the run adds.

Run:  python benchmarks/soak.py [--minutes 2,5,20] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = Path(__file__).resolve().parent / "_trivial_server.py"

EXPERIMENT = """
version: 1
name: soak-{minutes}m
system:
  ports: [web]
  processes:
    - name: web-1
      command: ["{python}", "{server}", "--port", "${{ports.web}}"]
      ready: {{tcp: "127.0.0.1:${{ports.web}}"}}
    - name: web-2
      command: ["{python}", "{server}", "--port", "${{ports.web}}"]
      ready: {{tcp: "127.0.0.1:${{ports.web}}"}}
targets:
  web: {{kind: process, select: "web-*"}}
load: {{url: "http://127.0.0.1:${{ports.web}}/", rate: {rate}/s, timeout: 1s}}
steady_state:
  - {{name: p50, of: latency, quantile: 0.5, margin: 100%}}
  - {{name: p99, of: latency, quantile: 0.99, max: 500ms, margin: 1000%}}
  - {{name: errors, of: error_rate, max: 10%}}
faults:
  - {{type: pause, target: web, at: 5s, duration: 2s}}
blast_radius: {{count: 1, seed: 1}}
phases: {{warmup: 5s, baseline: 60s, fault: 30s, recovery: 30s}}
hypothesis: {{trials: {trials}, comparison: before_after}}
safety: {{max_duration: {limit}m}}
"""


@dataclass
class Figures:
    minutes: float
    requests: int
    peak_rss: float
    """MB."""
    phases_rss: float
    """MB: the highest VmRSS until the last recovery phase ended."""
    samples_file: float
    """MB."""
    result_file: float
    """MB."""
    report_seconds: float
    report_size: float
    """MB."""
    outcome: str
    reason: str
    """The verdict's reason (the run's outcome is the system's, not the benchmark's)."""


LAST_PHASE = re.compile(r"\[\s*[\d.]+s\] recovery \(trial (\d+)\): ([\d.]+)s")
"""The console's line for a trial's recovery phase: its number and its length."""


class Memory:
    """A process's resident memory (MB), read from /proc every 0.2 s until it exits: its
    high-water mark, and its highest VmRSS until :attr:`phases_end` (monotonic seconds)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.phases = 0.0
        self.phases_end = float("inf")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text().splitlines()
            except OSError:
                return
            fields = {line.split(":")[0]: line.split()[1:2] for line in status}
            if fields.get("VmHWM"):
                self.peak = max(self.peak, int(fields["VmHWM"][0]) / 1024)
            if fields.get("VmRSS") and time.monotonic() < self.phases_end:
                self.phases = max(self.phases, int(fields["VmRSS"][0]) / 1024)
            self.stop.wait(0.2)


def soak(minutes: float, rate: int, folder: Path) -> Figures:
    trials = max(1, round((minutes * 60 - 65) / 60))
    path = folder / f"soak-{minutes:g}m.yaml"
    path.write_text(
        EXPERIMENT.format(
            minutes=f"{minutes:g}", python=sys.executable, server=SERVER, rate=rate,
            trials=trials, limit=int(minutes) + 10,
        )
    )  # fmt: skip
    reports = folder / f"reports-{minutes:g}m"
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "run", str(path), "--reports", str(reports)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    memory = Memory(runner.pid)
    memory.thread.start()
    assert runner.stdout is not None
    lines: list[str] = []

    def read(stdout: Any) -> None:
        for line in stdout:
            lines.append(line)
            last = LAST_PHASE.search(line)
            if last is not None and int(last.group(1)) == trials:
                memory.phases_end = time.monotonic() + float(last.group(2))

    reading = threading.Thread(target=read, args=(runner.stdout,), daemon=True)
    reading.start()
    _, status, usage = os.wait4(runner.pid, 0)  # its own peak, to the end (and its children's)
    runner.returncode = os.waitstatus_to_exitcode(status)
    memory.stop.set()
    memory.thread.join()
    reading.join()
    output = "".join(lines)
    found = list(reports.glob("*/result.json"))
    if len(found) != 1:
        code = runner.returncode
        sys.exit(f"the {minutes:g}-minute run wrote no result (exit {code}):\n{output[-3000:]}")
    [result_path] = found
    run_dir = result_path.parent
    result = json.loads(result_path.read_text())
    if result["samples"] is None:
        sys.exit(f"the {minutes:g}-minute run wrote no samples:\n{output[-3000:]}")
    (run_dir / "report.html").unlink()
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "chaoskit", "report", str(run_dir)], check=True,
        capture_output=True,
    )  # fmt: skip
    report_seconds = time.monotonic() - began
    mb = 1024 * 1024
    return Figures(
        minutes=minutes,
        requests=int(result["samples"]["requests"]),
        peak_rss=max(memory.peak, usage.ru_maxrss / 1024),
        phases_rss=memory.phases,
        samples_file=(run_dir / result["samples"]["file"]).stat().st_size / mb,
        result_file=result_path.stat().st_size / mb,
        report_seconds=report_seconds,
        report_size=(run_dir / "report.html").stat().st_size / mb,
        outcome=str(result["outcome"]),
        reason=str((result.get("verdict") or {}).get("reason") or result.get("error")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="2,5,20")
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()
    rows: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="chaoskit-soak-") as tmp:
        for minutes in [float(m) for m in args.minutes.split(",")]:
            rows.append(soak(minutes, args.rate, Path(tmp)))
            print(f"done: {minutes:g} min", file=sys.stderr, flush=True)
    print(f"rate {args.rate}/s; server: 2 workers of benchmarks/_trivial_server.py (SO_REUSEPORT)")
    print(
        f"{'minutes':>7} {'requests':>10} {'phases RSS MB':>13} {'peak RSS MB':>11} "
        f"{'samples MB':>10} "
        f"{'result.json MB':>14} {'report s':>8} {'report MB':>9}  outcome"
    )
    for r in rows:
        print(
            f"{r.minutes:>7g} {r.requests:>10,} {r.phases_rss:>13.1f} {r.peak_rss:>11.1f} "
            f"{r.samples_file:>10.2f} "
            f"{r.result_file:>14.3f} {r.report_seconds:>8.2f} {r.report_size:>9.3f}  {r.outcome}"
        )
    for r in rows:
        print(f"{r.minutes:g} min: {r.outcome}: {r.reason}")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        millions = (last.requests - first.requests) / 1e6
        print(
            f"slope per million requests ({first.minutes:g} -> {last.minutes:g} min): "
            f"peak RSS {(last.peak_rss - first.peak_rss) / millions:+.1f} MB, "
            f"samples file {(last.samples_file - first.samples_file) / millions:+.2f} MB, "
            f"report {(last.report_seconds - first.report_seconds) / millions:+.2f} s"
        )
        print(
            f"peak RSS {last.minutes:g} min vs {first.minutes:g} min: "
            f"{(last.peak_rss / first.peak_rss - 1) * 100:+.1f} % (target: within 10 %)"
        )


if __name__ == "__main__":
    main()
