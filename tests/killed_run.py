"""``chaoskit run`` in the background, to be SIGKILLed at a chosen moment: the runner tests
that check what the watchdog takes back after the runner dies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HELD_OPEN = """
steady_state: [{name: errors, of: error_rate}]
hypothesis: {trials: 1}
phases: {warmup: 0s, baseline: 1s, fault: 5m, recovery: 1s}
safety: {abort_when: [{metric: errors, above: 50%, for: 5s}], max_duration: 10m}
"""
"""The end of an experiment whose faults stay applied for minutes: for a test that kills the
runner once they are."""


def kill_once_applied(experiment: Path, reports: Path, count: int, timeout: float = 60) -> None:
    """Run ``experiment``; SIGKILL the runner once its journal says ``count`` faults are
    applied (failing after ``timeout`` seconds, or if the run ends first)."""
    from waiting import wait_until

    runner = KilledRun(experiment, reports)
    try:
        wait_until(lambda: runner.applied() == count, timeout, f"{count} fault(s) applied")
    finally:
        runner.kill()


class KilledRun:
    """A background run whose stderr is kept, to say why if it ends before it is killed."""

    def __init__(self, experiment: Path, reports: Path) -> None:
        self.reports = reports
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def applied(self) -> int:
        """How many faults the run's journal says were applied so far; fails if it ended."""
        if self.process.poll() is not None:
            raise AssertionError(f"the run ended early: {self.process.communicate()[1]}")
        journals = list(self.reports.glob("*/journal.jsonl"))
        lines = journals[0].read_text().splitlines() if journals else []
        return sum(json.loads(line)["event"] == "applied" for line in lines)

    def kill(self) -> None:
        """SIGKILL: the runner runs no finaliser, only its watchdog can take the faults back."""
        self.process.kill()
        self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()
