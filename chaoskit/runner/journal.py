"""The write-ahead journal: every fault is written (and synced) before it is applied, and
every revert after it is done, so whoever reads the journal knows what may still be applied.

One JSON object a line, appended with ``O_APPEND``. A line torn by a crash mid-write is the
last one and is ignored: the fault it would have named was never applied (it is written first).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..drivers.base import AppliedFault
from ..drivers.process import start_ticks

__all__ = ["Journal", "JournalError", "JournalState", "find_stale", "read_journal"]

VERSION = 1


class JournalError(Exception):
    """A file that is not a chaoskit journal, or one that cannot be written."""


class Journal:
    """Appends events for one run; each write reaches the disk before the call returns."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def create(cls, path: Path, run_id: str) -> Self:
        """A new journal for run ``run_id``, owned by this process."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except FileExistsError:
            raise JournalError(f"{path} already exists: a journal is never reused") from None
        journal = cls(path, fd)
        pid = os.getpid()
        journal._write(
            {
                "event": "open",
                "v": VERSION,
                "run": run_id,
                "pid": pid,
                "pid_start": start_ticks(pid),
                "host": socket.gethostname(),
            }
        )
        return journal

    @classmethod
    def append_to(cls, path: Path) -> Self:
        """Open an existing journal to record reverts (a rollback from another process)."""
        read_journal(path)  # refuses what is not a journal
        return cls(path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC))

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps({**event, "at": time.time()}, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd, line.encode())
            os.fsync(self._fd)
        except OSError as error:
            raise JournalError(f"cannot write the journal {self.path}: {error.strerror}") from None

    def injecting(self, record: AppliedFault) -> None:
        """Record a fault about to be applied; call this *before* applying it."""
        self._write({"event": "inject", "fault": record.to_json()})

    def applied(self, record: AppliedFault) -> None:
        """Record that the fault is in place."""
        self._write({"event": "applied", "id": record.id})

    def reverted(self, record: AppliedFault, error: str | None = None) -> None:
        """Record a revert: done, or failed with ``error`` (then it still counts as applied)."""
        event: dict[str, Any] = {"event": "revert", "id": record.id, "ok": error is None}
        if error is not None:
            event["error"] = error
        self._write(event)

    def started(self, part: dict[str, Any]) -> None:
        """Record a part of the system the run started (a process group or a container), so
        that whoever rolls the run back after a crash can stop it too."""
        self._write({"event": "started", "part": part})

    def stopped(self, key: str) -> None:
        """Record that a started part was stopped."""
        self._write({"event": "stopped", "key": key})

    def close(self) -> None:
        """Mark the run finished (only meaningful when nothing is left applied) and close."""
        if self._fd >= 0:
            self._write({"event": "close"})
            os.close(self._fd)
            self._fd = -1

    def release(self) -> None:
        """Close the file without marking the run finished."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class JournalState:
    """What a journal says: who wrote it, and which faults may still be applied."""

    path: Path
    run: str
    pid: int
    pid_start: int | None
    pending: list[AppliedFault] = field(default_factory=list)
    """Faults injected (or about to be) and not reverted, in injection order."""
    closed: bool = False
    failures: dict[str, str] = field(default_factory=dict)
    """The last revert error of each pending fault that has one."""
    running: list[dict[str, Any]] = field(default_factory=list)
    """Parts of the system the run started and did not record as stopped."""

    @property
    def owner_alive(self) -> bool:
        """Is the process that wrote it still running (the same process, not a reused pid)?"""
        return self.pid_start is not None and start_ticks(self.pid) == self.pid_start


def _events(path: Path) -> Iterator[dict[str, Any]]:
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if number >= len(lines) - 1:
                return  # torn by a crash mid-write: the last line only
            raise JournalError(f"{path}:{number}: not a journal line") from None
        if not isinstance(event, dict) or "event" not in event:
            raise JournalError(f"{path}:{number}: not a journal line")
        yield event


def read_journal(path: Path) -> JournalState:
    """Replay a journal file into its state."""
    try:
        events = list(_events(path))
    except FileNotFoundError:
        raise JournalError(f"no journal at {path}") from None
    except IsADirectoryError:
        raise JournalError(f"{path} is a folder: give the journal.jsonl inside it") from None
    if not events or events[0].get("event") != "open" or events[0].get("v") != VERSION:
        raise JournalError(f"{path} is not a chaoskit journal (version {VERSION})")
    head = events[0]
    state = JournalState(path, str(head["run"]), int(head["pid"]), head.get("pid_start"))
    pending: dict[str, AppliedFault] = {}
    running: dict[str, dict[str, Any]] = {}
    for event in events[1:]:
        kind = event["event"]
        if kind == "inject":
            record = AppliedFault.from_json(event["fault"])
            pending[record.id] = record
        elif kind == "revert":
            if event.get("ok"):
                pending.pop(event["id"], None)
                state.failures.pop(event["id"], None)
            else:
                state.failures[event["id"]] = str(event.get("error", "failed"))
        elif kind == "started":
            running[str(event["part"]["key"])] = event["part"]
        elif kind == "stopped":
            running.pop(str(event["key"]), None)
        elif kind == "close":
            state.closed = True
    state.pending = list(pending.values())
    state.running = list(running.values())
    return state


def find_stale(reports: Path) -> list[JournalState]:
    """Journals under ``reports`` whose writer died with faults applied or parts running."""
    stale = []
    for path in sorted(reports.glob("*/journal.jsonl")):
        try:
            state = read_journal(path)
        except JournalError:
            continue
        if (state.pending or state.running) and not state.owner_alive:
            stale.append(state)
    return stale
