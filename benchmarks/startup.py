"""How fast the CLI starts: median and max wall time of `--help` and of validating quickstart.

Target (issue 2): median <= 0.3 s over 10 runs each. Run: python benchmarks/startup.py [RUNS]

Side by side with another checkout (one with its own .venv, e.g. a `git worktree` of the
commit before a change): python benchmarks/startup.py [RUNS] --against PATH. The two are run
alternately, so that a busy moment of a shared machine falls on both alike.
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


def command(checkout: Path | None = None) -> list[str]:
    """The installed console script if there is one (what users run), else python -m; of
    ``checkout``'s .venv when given."""
    if checkout is not None:
        return [str(checkout / ".venv" / "bin" / "chaoskit")]
    script = shutil.which("chaoskit", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "chaoskit"]


# As on a user's machine: bytecode is cached after the first run (PYTHONDONTWRITEBYTECODE,
# set in some sandboxes, would make every run compile chaoskit from source).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def once(args: list[str], checkout: Path | None = None) -> float:
    start = time.perf_counter()
    where = checkout or ROOT
    subprocess.run([*command(checkout), *args], cwd=where, capture_output=True, check=True, env=ENV)
    return time.perf_counter() - start


def measure(args: list[str], runs: int) -> list[float]:
    return [once(args) for _ in range(runs)]


def side_by_side(cases: dict[str, list[str]], runs: int, other: Path) -> int:
    """Each command here and in ``other``, alternately; medians and the difference."""
    for checkout in (None, other):
        once(["validate", "experiments/quickstart.yaml"], checkout)  # warm caches, bytecode
    print(f"{'command':<48} {'runs':>4} {'here s':>7} {'other s':>7} {'diff ms':>8}")
    for name, args in cases.items():
        here, there = [], []
        for _ in range(runs):
            here.append(once(args))
            there.append(once(args, other))
        a, b = statistics.median(here), statistics.median(there)
        print(f"{name:<48} {runs:>4} {a:>7.3f} {b:>7.3f} {(a - b) * 1000:>+8.0f}")
    return 0


def main() -> int:
    args = sys.argv[1:]
    other = None
    if "--against" in args:
        at = args.index("--against")
        other = Path(args[at + 1]).resolve()
        del args[at : at + 2]
    runs = int(args[0]) if args else 10
    cases = {
        "chaoskit --help": ["--help"],
        "chaoskit validate experiments/quickstart.yaml": [
            "validate",
            "experiments/quickstart.yaml",
        ],
    }
    if other is not None:
        return side_by_side(cases, runs, other)
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
