"""Faults on local processes: crash (any signal), pause (SIGSTOP, then SIGCONT), and disk full
(a balloon file in the tmpfs of a process started in a sandbox, reached through /proc).

A process is identified by its pid *and* its start time (from ``/proc``), so a revert never
signals an unrelated process that happens to reuse the pid after the target died.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ..model import Fault
from ..model.faults import CrashFault, DiskFullFault, PauseFault
from .base import AppliedFault, DriverError, Target

__all__ = ["ProcessDriver", "process_target", "start_ticks"]


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None if there is no such process."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def process_target(
    pid: int,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    tmpfs: str | None = None,
) -> Target:
    """A target for the running process ``pid`` (with the tmpfs its sandbox mounted, if any);
    raises :class:`DriverError` if there is no such process."""
    ticks = start_ticks(pid)
    if ticks is None:
        raise DriverError(f"no process with pid {pid}")
    ref: dict[str, object] = {"pid": pid, "start": ticks}
    if tmpfs:
        ref["tmpfs"] = tmpfs
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
    """Crash and pause for local processes."""

    name = "process"

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on ``target``; refuses faults and targets it cannot handle."""
        if target.kind != "process":
            raise DriverError(f"the process driver cannot act on a {target.kind} target")
        if not _alive(target):
            raise DriverError(f"{target.name} (pid {target.ref.get('pid')}) is not running")
        if isinstance(fault, CrashFault):
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
            leave = {"leave": fault.leave.bytes} if fault.leave else {}
            free = {"free_percent": float(fault.free.percent)} if fault.free else {}
            balloon = f"{path.rstrip('/')}/{BALLOON}"
            params = {"path": path, **leave, **free}
            return AppliedFault(self.name, "disk_full", target, params, {"remove": balloon})
        raise DriverError(f"the process driver cannot apply a {fault.type} fault")

    async def apply(self, record: AppliedFault) -> None:
        """Send the crash signal, SIGSTOP for a pause, or inflate the balloon."""
        if record.fault == "disk_full":
            _inflate(record)
            return
        crash = record.fault == "crash"
        signum = signal.Signals[record.params["signal"]] if crash else signal.SIGSTOP
        if not _signal(record.target, signum):
            raise DriverError(f"{record.target.name} exited before the {record.fault} was applied")

    async def revert(self, record: AppliedFault) -> None:
        """Resume a paused process, remove a balloon; a crash has nothing to take back."""
        if "signal" in record.undo:
            _signal(record.target, signal.Signals[record.undo["signal"]])
        if "remove" in record.undo and _alive(record.target):
            _inside(record.target, record.undo["remove"]).unlink(missing_ok=True)


BALLOON = ".chaoskit-balloon"
"""The file that fills a tmpfs; its name says who made it."""


def _inside(target: Target, path: str) -> Path:
    """``path`` as the target process sees it (its mount namespace, through /proc)."""
    return Path(f"/proc/{int(target.ref['pid'])}/root") / path.lstrip("/")


def _inflate(record: AppliedFault) -> None:
    """Fill the tmpfs until only ``leave`` bytes or ``free_percent`` remain."""
    if not _alive(record.target):
        raise DriverError(f"{record.target.name} exited before the disk_full was applied")
    mount = _inside(record.target, record.params["path"])
    stat = os.statvfs(mount)
    total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    keep = record.params.get("leave", total * record.params.get("free_percent", 0.0) / 100)
    size = int(free - keep)
    balloon = _inside(record.target, record.undo["remove"])
    if size <= 0:
        return
    fd = os.open(balloon, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        os.close(fd)
        balloon.unlink(missing_ok=True)
        raise DriverError(
            f"could not fill {record.params['path']} of {record.target.name}: {exc}"
        ) from exc
    os.close(fd)
