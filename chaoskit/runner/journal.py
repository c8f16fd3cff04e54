"""The write-ahead journal: every fault is written (and synced) before it is applied, and
every revert after it is done, so whoever reads the journal knows what may still be applied.

One JSON object a line, appended with ``O_APPEND``; each line ends with a CRC-32 of the rest
(``,"crc":"…"}``), so a damaged line is found and skipped while every intact one still
counts. A line torn by a crash mid-write is the last one and is expected: the fault it would
have named was never applied (it is written first). Any other damage is reported: what it named
may still be applied, so the journal blocks new runs until a person has looked (``chaoskit
rollback --dismiss``). Version 1 journals (no checksums) are still read.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..drivers.base import AppliedFault
from ..drivers.process import start_ticks

__all__ = [
    "Damage",
    "Journal",
    "JournalError",
    "JournalState",
    "find_stale",
    "journals_under",
    "read_journal",
]

VERSION = 2
_READABLE = (1, 2)
_CRC = re.compile(rb',"crc":"([0-9a-f]{8})"\}$')


class JournalError(Exception):
    """A file that is not a chaoskit journal, or one that cannot be written."""


class Journal:
    """Appends events for one run; each write reaches the disk before the call returns."""

    def __init__(self, path: Path, fd: int, *, fresh_line: bool = False) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()  # writes come from worker threads, never the event loop
        self._fresh_line = fresh_line
        """Start the next write on a new line: the file ends in a fragment (a torn write)."""

    @classmethod
    def create(cls, path: Path, run_id: str) -> Self:
        """A new journal for run ``run_id``, owned by this process."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
        except FileExistsError:
            raise JournalError(f"{path} already exists: a journal is never reused") from None
        except OSError as error:
            raise JournalError(f"cannot create the journal {path}: {error.strerror}") from None
        journal = cls(path, fd)
        pid = os.getpid()
        try:
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
            _sync_folder(path.parent)  # the file's name survives a power cut, too
        except (JournalError, OSError) as error:
            journal.release()
            path.unlink(missing_ok=True)  # nothing was applied: no journal is needed
            raise JournalError(f"cannot write the journal {path}: {error}") from None
        return journal

    @classmethod
    def append_to(cls, path: Path) -> Self:
        """Open an existing journal to record reverts (a rollback from another process)."""
        read_journal(path)  # refuses what is not a journal
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            raise JournalError(f"cannot open the journal {path}: {error.strerror}") from None
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        return cls(path, fd, fresh_line=torn)

    def _write(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._write_locked(event)

    def _write_locked(self, event: dict[str, Any]) -> None:
        data = encode({**event, "at": time.time()})
        if self._fresh_line:  # never append to a torn line (it would damage this one too);
            # say it was torn by a write that failed, so it is not taken for damage
            data = b"\n" + encode({"event": "torn", "at": time.time()}) + data
        view = memoryview(data)
        try:
            while view:  # a short write (a full disk) is retried, then fails with ENOSPC
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as error:
            self._fresh_line = self._fresh_line or len(view) < len(data)
            raise JournalError(f"cannot write the journal {self.path}: {error.strerror}") from None
        self._fresh_line = False

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

    def dismissed(self, by: str) -> None:
        """Record that a person took over what the journal may still name (its damaged lines
        and any fault left applied): it no longer blocks new runs."""
        self._write({"event": "dismiss", "by": by})

    def close(self) -> None:
        """Mark the run finished (only meaningful when nothing is left applied) and close."""
        if self._fd >= 0:
            try:
                self._write({"event": "close"})
            finally:
                self.release()

    def release(self) -> None:
        """Close the file without marking the run finished."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def encode(event: dict[str, Any]) -> bytes:
    """One journal line: the event as JSON, its CRC-32 the last field, and a newline."""
    body = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
    return body[:-1] + b',"crc":"%08x"}\n' % zlib.crc32(body)


def _decode(line: bytes, checked: bool) -> dict[str, Any] | str:
    """The event on ``line``, or why it cannot be trusted."""
    if checked:
        found = _CRC.search(line)
        if found is None:
            return "no checksum"
        body = line[: found.start()] + b"}"
        if zlib.crc32(body) != int(found.group(1), 16):
            return "its checksum does not match"
        line = body
    try:
        event = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except ValueError:
        return "not JSON"
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return "not a journal event"
    return event


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Damage:
    """A journal line that cannot be trusted, and why."""

    line: int
    """1-based; 0 when the whole file cannot be read."""
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.why}" if self.line else self.why


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
    damaged: list[Damage] = field(default_factory=list)
    """Lines that cannot be trusted (not counting a last line torn by a crash)."""
    torn: bool = False
    """A line was cut short by a crash or a failed write (expected: a record is written before
    what it names is done, so a cut one named nothing applied)."""
    dismissed: bool = False
    """A person took over what it names (``chaoskit rollback --dismiss``)."""

    @property
    def understood(self) -> bool:
        """Whether its first line (who wrote it) could be read."""
        return self.pid > 0

    @property
    def owner_alive(self) -> bool:
        """Is the process that wrote it still running (the same process, not a reused pid)?"""
        return self.pid_start is not None and start_ticks(self.pid) == self.pid_start

    @property
    def stale(self) -> bool:
        """Its writer is gone and it may name something still applied or running (or damaged
        lines that might have): nothing new may run until it is rolled back or dismissed."""
        if self.dismissed or self.owner_alive:
            return False
        return bool(self.pending or self.running or self.damaged)

    def trouble(self) -> str:
        """What it names, in a few words, for a refusal."""
        said = [f"{len(self.pending)} fault(s)", f"{len(self.running)} part(s)"]
        if self.damaged:
            said.append(f"{len(self.damaged)} damaged line(s): {', '.join(map(str, self.damaged))}")
        return "; ".join(said)


def _events(data: bytes) -> tuple[list[tuple[int, dict[str, Any]]], list[Damage], bool]:
    """The intact events with their line numbers, the damaged lines, and whether a line was
    torn (the last one, or one a later ``torn`` record names)."""
    lines = data.split(b"\n")
    ends_cleanly = lines[-1] == b""
    if ends_cleanly:
        lines.pop()
    checked = True
    events: list[tuple[int, dict[str, Any]]] = []
    damaged: list[Damage] = []
    torn = False
    before = 0  # the last line with something on it, before this one
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if number == 1 and _CRC.search(line) is None:
            head = _decode(line, checked=False)  # version 1: no checksums
            if isinstance(head, dict) and head.get("event") == "open" and head.get("v") == 1:
                checked = False
        event = _decode(line, checked)
        if isinstance(event, dict) and event["event"] == "torn":
            if damaged and damaged[-1].line == before:
                damaged.pop()  # cut short by a crash or a failed write: expected, harmless
                torn = True
        elif isinstance(event, dict):
            events.append((number, event))
        elif number == len(lines) and not ends_cleanly:
            torn = True
        else:
            damaged.append(Damage(number, event))
        before = number
    return events, damaged, torn


def read_journal(path: Path) -> JournalState:
    """Replay a journal file into its state; damaged lines are skipped and listed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JournalError(f"no journal at {path}") from None
    except IsADirectoryError:
        raise JournalError(f"{path} is a folder: give the journal.jsonl inside it") from None
    except OSError as error:
        raise JournalError(f"cannot read the journal {path}: {error.strerror}") from None
    events, damaged, torn = _events(data)
    if not events and damaged:
        raise JournalError(
            f"{path} is not a chaoskit journal: no line of it is intact ({damaged[0]})"
        )
    head = events[0][1] if events and events[0][0] == 1 else {}
    if head.get("event") == "open" and head.get("v") not in _READABLE:
        raise JournalError(
            f"{path} is a journal of version {head.get('v')}, newer than this chaoskit reads "
            f"({', '.join(map(str, _READABLE))}): roll it back with the chaoskit that wrote it"
        )
    if events and head.get("event") != "open" and not (damaged and damaged[0].line == 1):
        raise JournalError(f"{path} is not a chaoskit journal (version {VERSION})")
    state = _replay(path, head, [event for _, event in (events[1:] if head else events)])
    state.damaged, state.torn = damaged, torn
    return state


def _replay(path: Path, head: dict[str, Any], events: list[dict[str, Any]]) -> JournalState:
    run, pid, pid_start = head.get("run"), head.get("pid"), head.get("pid_start")
    state = JournalState(
        path,
        str(run) if run is not None else path.parent.name,
        pid if isinstance(pid, int) and pid > 0 else 0,
        pid_start if isinstance(pid_start, int) else None,
    )
    pending: dict[str, AppliedFault] = {}
    running: dict[str, dict[str, Any]] = {}
    for event in events:
        try:
            _apply(event, state, pending, running)
        except (KeyError, TypeError, ValueError):  # intact but not what this version writes
            continue
    state.pending = list(pending.values())
    state.running = list(running.values())
    return state


def _apply(
    event: dict[str, Any],
    state: JournalState,
    pending: dict[str, AppliedFault],
    running: dict[str, dict[str, Any]],
) -> None:
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
    elif kind == "dismiss":
        state.dismissed = True


def journals_under(reports: Path) -> Iterator[Path]:
    """Every run's journal under ``reports``, oldest run first."""
    yield from sorted(reports.glob("*/journal.jsonl"))


def find_stale(reports: Path) -> list[JournalState]:
    """Journals under ``reports`` that block a new run (see :attr:`JournalState.stale`); a
    file that cannot be read at all counts, as an unreadable state."""
    stale = []
    for path in journals_under(reports):
        try:
            state = read_journal(path)
        except JournalError as error:  # unreadable: it blocks, with the reason
            state = JournalState(path, path.parent.name, 0, None, damaged=[Damage(0, str(error))])
        if state.stale:
            stale.append(state)
    return stale
