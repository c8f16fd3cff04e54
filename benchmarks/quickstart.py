"""Does the README's first line give the same answer every time? Runs the quickstart experiment
N times, as a new user would (`chaoskit run experiments/quickstart.yaml`), and prints each run's
exit code, outcome, duration and per-metric verdicts, then the tally.

With ``--stress K`` it keeps K CPU-bound processes running beside every run (``stress-ng
--cpu K`` when it is installed, plain Python busy loops otherwise), as on a busy CI runner or
a laptop in a video call.

Targets (issue: dependable on a busy machine): HELD (exit 0) in at least 19 of 20 runs on a
quiet 2-core machine and 9 of 10 with ``--stress 2``; a run of at most 60 s.

Run:  python benchmarks/quickstart.py [--runs 20] [--stress 2] [--experiment FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY = "while True: pass"


@contextlib.contextmanager
def stressed(cpus: int) -> Iterator[str]:
    """K CPU-bound processes for as long as the block lasts; says which tool made them."""
    if cpus <= 0:
        yield "quiet"
        return
    if shutil.which("stress-ng"):
        argv = [["stress-ng", "--cpu", str(cpus), "--quiet"]]
        tool = f"stress-ng --cpu {cpus}"
    else:
        argv = [[sys.executable, "-c", BUSY] for _ in range(cpus)]
        tool = f"{cpus} Python busy loops"
    burners = [subprocess.Popen(a, stdout=subprocess.DEVNULL) for a in argv]
    try:
        yield tool
    finally:
        for burner in burners:
            burner.terminate()
            burner.wait()


def one_run(experiment: Path, reports: Path) -> dict[str, object]:
    """Run the experiment once; what it ended with."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    took = time.monotonic() - began
    results = sorted(reports.glob("*/result.json"), key=lambda p: p.stat().st_mtime)
    row: dict[str, object] = {"exit": done.returncode, "seconds": took, "outcome": "-"}
    if results:
        result = json.loads(results[-1].read_text())
        row["outcome"] = result["outcome"]
        verdict = result.get("verdict") or {}
        row["metrics"] = {m["metric"]: m["verdict"] for m in verdict.get("metrics", [])}
        why = [
            f"{m['metric']}: {m['reason']}"
            for m in verdict.get("metrics", [])
            if m["verdict"] != "held"
        ]
        why += [f["reason"] for f in verdict.get("recovery_failures") or []]
        if result.get("safety"):
            why.append(f"aborted: {result['safety']['detail']}")
        why += [str(p) for p in (result.get("steady_state") or {}).get("problems") or []]
        row["why"] = why
        row["worst_loop_lag"] = (result.get("event_loop") or {}).get("worst_lag")
    else:
        row["why"] = [done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--stress", type=int, default=0, help="CPU-bound processes beside it")
    parser.add_argument("--experiment", type=Path, default=ROOT / "experiments/quickstart.yaml")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chaoskit-quickstart-"))
    rows = []
    with stressed(args.stress) as how:
        print(f"{args.experiment.name}, {args.runs} runs, machine: {how}")
        print(f"{'run':>3} {'exit':>4} {'outcome':<13} {'seconds':>7} {'loop lag':>8}  metrics")
        for number in range(1, args.runs + 1):
            row = one_run(args.experiment, work / f"run-{number}")
            rows.append(row)
            metrics = " ".join(f"{k}={v}" for k, v in dict(row.get("metrics") or {}).items())
            lag = row.get("worst_loop_lag")
            shown = "-" if lag is None else f"{float(str(lag)) * 1000:.0f} ms"
            print(
                f"{number:>3} {row['exit']:>4} {row['outcome']!s:<13} "
                f"{float(str(row['seconds'])):7.1f} {shown:>8}  {metrics}",
                flush=True,
            )
            for why in row.get("why") or []:  # type: ignore[attr-defined]
                if why:
                    print(f"{'':>30}{why}", flush=True)
    tally = Counter(str(r["outcome"]) for r in rows)
    seconds = [float(str(r["seconds"])) for r in rows]
    held = tally.get("held", 0)
    print(
        f"tally: {', '.join(f'{k} {v}' for k, v in tally.most_common())}; "
        f"HELD {held}/{len(rows)}; duration median {statistics.median(seconds):.1f} s, "
        f"max {max(seconds):.1f} s"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
