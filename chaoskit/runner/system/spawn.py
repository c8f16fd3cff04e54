"""The one way the runner starts a local program: in its own session (so that its whole group
can be stopped), its output in a log file of the run, journaled as a part before anything
waits on it, and stopped with SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...drivers.process import start_ticks
from .parts import GRACE, Parts, tail

__all__ = ["Spawned", "spawn"]


class Spawned:
    """A program the runner started: its process and its log."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        """Its pid (its process group's too)."""
        return self.process.pid

    def exited(self, before: str = "") -> str | None:
        """None while it runs; else its exit code and last output, for a message."""
        code = self.process.poll()
        if code is None:
            return None
        return f"exited with {code}{before}; its last output:\n{tail(self.log)}"

    def alive(self) -> Callable[[], str | None]:
        """For :func:`~.parts.ready`: why it is not alive before it was ready, or None."""
        return lambda: self.exited(" before it was ready")


def spawn(
    parts: Parts,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    grace: float = GRACE,
) -> Spawned:
    """Start ``argv`` as part ``name`` of the system, logging to ``logs/<name>.log``; the part
    is tracked (journaled, stopped on every exit path). Raises what ``subprocess.Popen``
    raises (``OSError``, ``ValueError``) for the caller to word."""
    log = parts.log(name)
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    parts.track(_process_part(name, process.pid), lambda: _terminate(process, grace))
    return Spawned(process, log)


def _process_part(name: str, pid: int) -> dict[str, Any]:
    return {"key": f"process:{pid}", "kind": "process", "name": name, "pid": pid,
            "start": start_ticks(pid)}  # fmt: skip


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process's group, then SIGKILL it if it has not gone within ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
