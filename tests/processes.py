"""Real processes for tests to fault: a sleeper to pause, and what /proc says about a pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def state_of(pid: int) -> str:
    """The process's state letter in /proc (``T`` stopped, ``Z`` zombie, ``S`` sleeping...)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return state_of(pid) != "Z"
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def sleeper() -> Iterator[int]:
    """A ``sleep 600`` for the block; resumed and killed afterwards whatever a test did to it."""
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()
