"""How long a Docker Swarm service takes to heal after its task is killed, as chaoskit judges
it: one ``chaoskit run`` of ``--trials`` trials, each killing the service's one task.

The swarm is real and runs here (tests/swarms.py: a second Docker engine inside a network
namespace of its own, one node, one replica published in ``host`` mode, restart policy
``any`` with a 1 s delay). Per trial it prints chaoskit's time to recovery for the errors the
load sees and for the replicas missing (the ``replicas`` probe), both from the kill's revert,
and whether each came back; then the medians and the run's verdict. The engine stores images
with vfs, which copies the image for each new container: that is most of the time here.

Needs root (namespaces, a second dockerd) and the stack image (built if missing).

Run: python benchmarks/swarm_recovery.py [--trials 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import docker  # noqa: E402
from swarms import one_node_swarm, task_kill  # noqa: E402

from chaoskit.stack.image import ensure_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: network namespaces and a second dockerd")
    first = docker.from_env()
    image = ensure_image(first)
    with tempfile.TemporaryDirectory() as folder, one_node_swarm(first, image) as swarm:
        experiment = Path(folder) / "swarm.yaml"
        experiment.write_text(task_kill(swarm, args.trials, service="api"))
        policy = Path(folder) / "policy.yaml"
        policy.write_text("version: 1\nallowed_target_kinds: [service]\n")  # and no caps
        reports = Path(folder) / "reports"
        env = {**os.environ, "CHAOSKIT_POLICY": str(policy)}
        argv = [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports)]
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
        [found] = reports.glob("*/result.json")
        result = json.loads(found.read_text())
    verdict = result.get("verdict") or {}
    recovery = verdict.get("recovery", {})
    print(f"{'trial':>5} {'errors back (s)':>16} {'replicas back (s)':>18}")
    by_trial: dict[int, dict[str, str]] = {}
    for metric in ("errors", "missing"):
        for trial in recovery.get(metric, {}).get("trials", []):
            said = f"{trial['seconds']:.1f}" if trial.get("recovered") else "not back"
            by_trial.setdefault(trial["trial"], {})[metric] = said
    for number, row in sorted(by_trial.items()):
        print(f"{number:>5} {row.get('errors', '-'):>16} {row.get('missing', '-'):>18}")
    for metric in ("errors", "missing"):
        times = [t["seconds"] for t in recovery.get(metric, {}).get("trials", [])
                 if t.get("recovered")]  # fmt: skip
        if times:
            print(f"{metric}: median {statistics.median(times):.1f} s over {len(times)} trials "
                  f"(min {min(times):.1f}, max {max(times):.1f})")  # fmt: skip
    print(
        f"outcome {result['outcome']}, verdict {verdict.get('verdict')}, "
        f"trials run {len(by_trial)}; {result.get('stopped') or result.get('error') or ''}"
    )


if __name__ == "__main__":
    main()
