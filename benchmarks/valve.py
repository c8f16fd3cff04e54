"""How fast the safety valve reacts: from a breach to every fault being reverted.

Three kinds of breach, each ``--tries`` times, against a separately started ``chaoskit proxy``
holding the run's one fault (a 1 ms latency on a proxy the load does not use, so the fault is
real and has to be taken back):

- ``refused``: the web server the load hits is SIGKILLed at a random moment of the fault phase;
  requests are refused. Abort condition: ``errors above 20% for 1s``.
- ``hang``: the web server is SIGSTOPped instead; requests hang until their 1 s deadline, where
  they count as failed. Same condition.
- ``probe``: a probe read every 100 ms starts reading a breaching value (``above 0.5``, no
  ``for``).

The reaction runs from the first failing request (for a hang: its deadline; for the probe: the
breaching write) to the revert recorded in result.json, on the runner's own monotonic clock;
the last column is the same seen from outside (the proxy has no toxic left). Targets: a hard
outage reverted within ``for`` + 0.3 s at p99; the probe within 500 ms at p99.

Run:  python benchmarks/valve.py [--tries 20] [--for 1s]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from chaoskit.load import RequestSamples

EXPERIMENT = """
version: 1
name: valve-reaction-{mode}
system: {{toxiproxy: "{api}"}}
targets: {{side: {{kind: proxy, select: side}}}}
load: {{url: "http://127.0.0.1:{port}/", rate: 50/s, timeout: 1s}}
steady_state:
  - {{name: errors, of: error_rate}}
  - {{name: breach, of: probe, interval: 100ms,
      probe: {{type: command, command: [cat, "{flag}"], value: stdout}}}}
faults: [{{type: latency, target: side, latency: 1ms}}]
blast_radius: {{count: 1}}
phases: {{warmup: 0s, baseline: 2s, fault: 60s, recovery: 0s}}
safety:
  abort_when:
    - {condition}
  max_duration: 5m
"""
POLICY = """
version: 1
max_blast_radius: {fraction: 100%}
windows: []
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def start_web(folder: Path) -> tuple[subprocess.Popen[str], int]:
    web = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert web.stdout is not None
    found = re.search(r"port (\d+)", web.stdout.readline())
    assert found is not None
    return web, int(found.group(1))


def one_try(
    mode: str, persistence: str, api: str, work: Path, rng: random.Random
) -> tuple[float, float]:
    """One run broken at a random moment: (reaction from result.json, seen from outside)."""
    web, port = start_web(work)
    flag = work / "breach"
    flag.write_text("0")
    condition = (
        "{metric: breach, above: 0.5}"
        if mode == "probe"
        else f"{{metric: errors, above: 20%, for: {persistence}}}"
    )
    experiment = work / f"valve-{mode}.yaml"
    experiment.write_text(
        EXPERIMENT.format(mode=mode, api=api, port=port, flag=flag, condition=condition)
    )
    reports = Path(tempfile.mkdtemp(prefix="reports-", dir=work))
    toxics = f"{api}/proxies/side/toxics"
    runner = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports),
         "--policy", str(work / "policy.yaml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not httpx.get(toxics, trust_env=False).json():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 1.0))
        broke_wall = time.time()
        if mode == "refused":
            web.kill()
        elif mode == "hang":
            web.send_signal(signal.SIGSTOP)
        else:
            flag.write_text("1")
        broke = time.monotonic()
        while httpx.get(toxics, trust_env=False).json():
            time.sleep(0.002)
        outside = time.monotonic() - broke
        runner.wait(60)
    finally:
        if web.poll() is None:
            web.send_signal(signal.SIGCONT)
            web.kill()
        web.wait()
        if web.stdout is not None:
            web.stdout.close()
    [result_path] = reports.glob("*/result.json")
    result = json.loads(result_path.read_text())
    [revert] = [e for e in result["faults"] if e["event"] == "revert"]
    if mode == "probe":
        inject = next(e for e in result["faults"] if e["event"] == "inject")
        began = inject["at"] + (broke_wall - inject["wall"])
        return revert["at"] - began, outside
    timeout = 1.0
    samples = RequestSamples.load(result["samples"], result_path.parent).window().to_json()
    inject = next(e for e in result["faults"] if e["event"] == "inject")
    failed = [  # when each failure was known: its answer, or its deadline for a hang
        due + min(latency if latency is not None else 0.0, timeout)
        for due, latency, error in zip(
            samples["due"], samples["latency"], samples["error"], strict=True
        )
        if error is not None and due >= inject["at"]
    ]
    assert result["safety"], "the valve did not trip"
    assert result["safety"]["reason"] == "abort_when", result["safety"]
    return revert["at"] - min(failed), outside


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--for", dest="persistence", default="1s")
    parser.add_argument("--modes", default="refused,hang,probe")
    args = parser.parse_args()
    persistence = float(args.persistence.rstrip("s"))
    rng = random.Random(5)
    work = Path(tempfile.mkdtemp(prefix="chaoskit-valve-"))
    (work / "policy.yaml").write_text(POLICY)
    proxy = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    rows: dict[str, tuple[list[float], list[float]]] = {}
    try:
        assert proxy.stdout is not None
        api = re.search(r"http://127\.0\.0\.1:\d+", proxy.stdout.readline()).group(0)  # type: ignore[union-attr]
        side = {"name": "side", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}  # unused
        httpx.post(f"{api}/proxies", json=side, trust_env=False).raise_for_status()
        for mode in args.modes.split(","):
            found = [one_try(mode, args.persistence, api, work, rng) for _ in range(args.tries)]
            rows[mode] = ([r for r, _ in found], [o for _, o in found])
    finally:
        proxy.terminate()
        proxy.wait()
    print(f"safety valve reaction, {args.tries} tries each (ms); 50 requests/s, timeout 1s")
    print(
        f"{'breach':8} {'from':28} {'median':>8} {'p99':>8} {'max':>8} {'outside p99':>12}  target"
    )
    for mode, (reacted, outside) in rows.items():
        ms = [v * 1000 for v in reacted]
        if mode == "probe":
            start, target = "the breaching reading", 500.0
        else:
            start = "first failure" if mode == "refused" else "first deadline (hang)"
            target = (persistence + 0.3) * 1000
        p99 = percentile(ms, 0.99)
        verdict = "met" if p99 <= target else "NOT met"
        print(
            f"{mode:8} {start:28} {statistics.median(ms):8.0f} {p99:8.0f} {max(ms):8.0f} "
            f"{percentile([v * 1000 for v in outside], 0.99):12.0f}  p99 <= {target:.0f}: {verdict}"
        )


if __name__ == "__main__":
    main()
