"""Faults on local processes: crash (any signal), pause (SIGSTOP, then SIGCONT), and disk full
(a balloon file in the tmpfs of a process started in a sandbox, reached through /proc).

A process is identified by its pid *and* its start time (from ``/proc``), so a revert never
signals an unrelated process that happens to reuse the pid after the target died.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..model import Fault
from ..model.faults import CrashFault, DiskFullFault, PauseFault
from .balloon import deflate, inflate
from .base import AppliedFault, DriverConfig, DriverError, Target, TargetGone, disk_params

__all__ = ["ProcessDriver", "ProcessNames", "describe", "process_target", "start_ticks"]


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if there is no such process, or
    it has exited and waits to be reaped (a zombie runs nothing)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of stat(5), counted from field 3


@dataclass(frozen=True)
class ProcessNames:
    """What a person would call a running process, as ``/proc`` tells it."""

    comm: str
    """Its own name (``/proc/PID/comm``, at most 15 characters): what ``ps`` and ``top`` show."""
    exe: str | None
    """Its executable's full path; None if it cannot be read (another user's process)."""
    cmdline: tuple[str, ...]
    """Its command line, ``argv[0]`` first (empty for a kernel thread)."""

    def names(self) -> list[str]:
        """Every name it goes by: its own name, its executable's basename and full path,
        ``argv[0]``'s basename, and the whole command line joined by spaces."""
        found = [self.comm]
        if self.exe:
            found += [os.path.basename(self.exe), self.exe]
        if self.cmdline:
            found += [os.path.basename(self.cmdline[0]), " ".join(self.cmdline)]
        return list(dict.fromkeys(n for n in found if n))


def describe(pid: int, start: int | None = None, proc: Path = Path("/proc")) -> ProcessNames | None:
    """The names of the running process ``pid``; None if it is gone or, given ``start`` (its
    start time in clock ticks), if ``pid`` is now another process."""
    here = proc / str(pid)
    try:
        comm = (here / "comm").read_text().rstrip("\n")
        raw = (here / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        exe: str | None = os.readlink(here / "exe").removesuffix(" (deleted)")
    except OSError:  # not ours to read, or a kernel thread
        exe = None
    ticks = start_ticks(pid, proc)  # read last: the names above belong to this process
    if ticks is None or (start is not None and ticks != start):
        return None
    cmdline = tuple(os.fsdecode(arg) for arg in raw.split(b"\0")[:-1] if raw)
    return ProcessNames(comm, exe, cmdline)


def process_target(
    pid: int,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    tmpfs: str | None = None,
    faketime: str | None = None,
) -> Target:
    """A target for the running process ``pid`` (with the tmpfs its sandbox mounted and the
    skew file it reads under libfaketime, if any); raises :class:`DriverError` if there is no
    such process."""
    ticks = start_ticks(pid)
    if ticks is None:
        raise DriverError(f"no process with pid {pid}")
    ref: dict[str, object] = {"pid": pid, "start": ticks}
    if tmpfs:
        ref["tmpfs"] = tmpfs
    if faketime:
        ref["faketime"] = faketime
    return Target("process", name or f"pid-{pid}", labels or {}, ref)


def _alive(target: Target) -> bool:
    """The very process the target names is still running (not a reuse of its pid)."""
    ref = target.ref
    return start_ticks(int(ref["pid"])) == int(ref["start"])


def _signal(target: Target, signum: signal.Signals) -> bool:
    """Send ``signum`` if the target is still the same process; False if it has gone."""
    if not _alive(target):
        return False
    try:
        os.kill(int(target.ref["pid"]), signum)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise DriverError(f"not allowed to signal {target.name} (pid {target.ref['pid']})") from exc
    return True


class ProcessDriver:
    """Crash, pause and disk full for local processes."""

    name = "process"

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver; local processes need no settings."""
        return cls()

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on ``target``; refuses faults and targets it cannot handle."""
        if target.kind != "process":
            raise DriverError(f"the process driver cannot act on a {target.kind} target")
        if not _alive(target):
            raise TargetGone(f"{target.name} (pid {target.ref.get('pid')}) is not running")
        if isinstance(fault, CrashFault):
            if fault.keep_down:
                raise DriverError(
                    "keep_down needs a container: chaoskit cannot start a process again"
                )
            return AppliedFault(self.name, "crash", target, {"signal": fault.signal}, {})
        if isinstance(fault, PauseFault):
            return AppliedFault(self.name, "pause", target, {}, {"signal": "SIGCONT"})
        if isinstance(fault, DiskFullFault):
            path = fault.path or target.ref.get("tmpfs")
            if not path:
                raise DriverError(
                    f"disk_full needs a tmpfs: {target.name} was not started in a sandbox "
                    "with one (system.processes[].tmpfs)"
                )
            return AppliedFault(
                self.name, "disk_full", target, disk_params(fault, path), {"deflate": path}
            )
        raise DriverError(f"the process driver cannot apply a {fault.type} fault")

    async def check(self, record: AppliedFault) -> None:
        """The process is still the one planned on (same pid and start time)."""
        if not _alive(record.target):
            raise TargetGone(f"{record.target.name} (pid {record.target.ref.get('pid')}) exited")

    async def apply(self, record: AppliedFault) -> None:
        """Send the crash signal, SIGSTOP for a pause, or inflate the balloon."""
        if record.fault == "disk_full":
            if not _alive(record.target):
                raise TargetGone(f"{record.target.name} exited before the disk_full was applied")
            p = record.params
            pid = int(record.target.ref["pid"])  # filling a disk takes a while: not on the loop
            await asyncio.to_thread(inflate, pid, p["path"], p.get("leave"), p.get("free_percent"))
            return
        crash = record.fault == "crash"
        signum = signal.Signals[record.params["signal"]] if crash else signal.SIGSTOP
        if not _signal(record.target, signum):
            raise TargetGone(f"{record.target.name} exited before the {record.fault} was applied")

    async def revert(self, record: AppliedFault) -> None:
        """Resume a paused process, remove a balloon; a crash has nothing to take back."""
        if "signal" in record.undo:
            _signal(record.target, signal.Signals[record.undo["signal"]])
        if "deflate" in record.undo and _alive(record.target):
            await asyncio.to_thread(deflate, int(record.target.ref["pid"]), record.undo["deflate"])

    async def aclose(self) -> None:
        """Nothing is held open."""
