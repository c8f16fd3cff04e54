"""How fast the safety valve reacts: time from a breach to every fault being reverted.

Each try runs ``chaoskit run`` on a tiny experiment against a separately started ``chaoskit
proxy``: a latency fault on one proxy, and an abort condition on a probe that reads a file
every 100 ms. Once the fault is in, the benchmark writes the breaching value into the file at a
random moment and times, from outside, how long until the proxy has no toxic left. The valve's
own decision time (from result.json) is shown beside it. Target: p99 <= 500 ms.

Run:  python benchmarks/valve.py [--tries 20]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

EXPERIMENT = """
version: 1
name: valve-reaction
system: {{toxiproxy: "{api}"}}
targets: {{web: {{kind: proxy, select: web}}}}
load: {{url: "http://127.0.0.1:{port}/", rate: 20/s}}
steady_state:
  - {{name: p50, of: latency}}
  - {{name: errors, of: error_rate}}
  - {{name: breach, of: probe, interval: 100ms,
      probe: {{type: command, command: [cat, "{flag}"], value: stdout}}}}
faults: [{{type: latency, target: web, latency: 10ms}}]
blast_radius: {{count: 1}}
phases: {{warmup: 0s, baseline: 1s, fault: 60s, recovery: 0s}}
safety:
  abort_when:
    - {{metric: errors, above: 50%, for: 5s}}
    - {{metric: breach, above: 0.5}}
  max_duration: 5m
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(5)
    work = Path(tempfile.mkdtemp(prefix="chaoskit-valve-"))
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    proxy = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    reacted: list[float] = []
    decided: list[float] = []
    try:
        assert web.stdout is not None
        assert proxy.stdout is not None
        web_port = int(re.search(r"port (\d+)", web.stdout.readline()).group(1))  # type: ignore[union-attr]
        api = re.search(r"http://127\.0\.0\.1:\d+", proxy.stdout.readline()).group(0)  # type: ignore[union-attr]
        created = httpx.post(
            f"{api}/proxies",
            json={"name": "web", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{web_port}"},
            trust_env=False,
        ).json()
        port = int(created["listen"].rsplit(":", 1)[1])
        flag = work / "breach"
        experiment = work / "valve.yaml"
        experiment.write_text(EXPERIMENT.format(api=api, port=port, flag=flag))
        toxics = f"{api}/proxies/web/toxics"
        for attempt in range(args.tries):
            flag.write_text("0")
            reports = work / f"reports-{attempt}"
            argv = [sys.executable, "-m", "chaoskit", "run", str(experiment)]
            runner = subprocess.Popen(
                [*argv, "--reports", str(reports)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            while not httpx.get(toxics, trust_env=False).json():
                time.sleep(0.01)
            time.sleep(rng.uniform(0.2, 1.0))
            breach_wall = time.time()
            breach = time.monotonic()
            flag.write_text("1")
            while httpx.get(toxics, trust_env=False).json():
                time.sleep(0.002)
            reacted.append(time.monotonic() - breach)
            runner.wait(60)
            [result] = reports.glob("*/result.json")
            data = json.loads(result.read_text())
            inject = next(e for e in data["faults"] if e["event"] == "inject")
            trip_wall = inject["wall"] + (data["safety"]["at"] - inject["at"])
            decided.append(trip_wall - breach_wall)
    finally:
        for process in (web, proxy):
            process.terminate()
            process.wait()
    rows = [
        ("breach → valve decides (result.json)", decided),
        ("breach → every fault reverted (seen outside)", reacted),
    ]
    print(f"safety valve reaction, {args.tries} tries (ms)")
    print(f"{'':46} {'median':>8} {'p99':>8} {'max':>8}  target")
    for name, values in rows:
        ms = [v * 1000 for v in values]
        print(
            f"{name:46} {statistics.median(ms):8.1f} {percentile(ms, 0.99):8.1f} {max(ms):8.1f}"
            + ("  p99 <= 500 ms: " + ("met" if percentile(ms, 0.99) <= 500 else "NOT met")
               if "reverted" in name else "")
        )  # fmt: skip


if __name__ == "__main__":
    main()
