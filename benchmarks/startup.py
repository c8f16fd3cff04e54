"""How fast the CLI starts: median and max wall time of `--help` and of validating quickstart.

Target (issue 2): median <= 0.3 s over 10 runs each. Run: python benchmarks/startup.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.3


def command() -> list[str]:
    """The installed console script if there is one (what users run), else python -m."""
    script = shutil.which("chaoskit", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chaoskit"]


# As on a user's machine: bytecode is cached after the first run (PYTHONDONTWRITEBYTECODE,
# set in some sandboxes, would make every run compile chaoskit from source).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*command(), *args], cwd=ROOT, capture_output=True, check=True, env=ENV)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cases = {
        "chaoskit --help": ["--help"],
        "chaoskit validate experiments/quickstart.yaml": [
            "validate",
            "experiments/quickstart.yaml",
        ],
    }
    measure(["validate", "experiments/quickstart.yaml"], 2)  # warm page cache and bytecode
    print(f"{'command':<48} {'runs':>4} {'median s':>9} {'max s':>7} {'target':>7}")
    ok = True
    for name, args in cases.items():
        times = measure(args, runs)
        median = statistics.median(times)
        ok &= median <= TARGET_S
        verdict = "ok" if median <= TARGET_S else "SLOW"
        print(f"{name:<48} {runs:>4} {median:>9.3f} {max(times):>7.3f} {verdict:>7}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
