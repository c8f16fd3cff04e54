"""A balloon file that fills a tmpfs to a chosen level, seen through ``/proc/<pid>/root`` so it
lands in the target's own mount namespace (a sandboxed process's or a container's)."""

from __future__ import annotations

import os
from pathlib import Path

from .base import DriverError

__all__ = ["BALLOON", "deflate", "inflate", "inside", "is_tmpfs"]

BALLOON = ".chaoskit-balloon"
"""The file that fills a tmpfs; its name says who made it."""


def inside(pid: int, path: str) -> Path:
    """``path`` as process ``pid`` sees it (its mount namespace, through /proc)."""
    return Path(f"/proc/{pid}/root") / path.lstrip("/")


def is_tmpfs(pid: int, mount: str) -> bool:
    """Is ``mount`` a tmpfs mount point in process ``pid``'s mount namespace?"""
    try:
        table = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False
    wanted = "/" + mount.strip("/")
    for line in table.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) > 4 and parts[4] == wanted and rest.split()[:1] == ["tmpfs"]:
            return True
    return False


def inflate(pid: int, mount: str, leave: int | None, free_percent: float | None) -> None:
    """Fill ``mount`` until ``leave`` bytes, or ``free_percent`` of it, remain free.

    Refuses anything but a tmpfs mount point: a balloon never lands on a real disk.
    """
    if not is_tmpfs(pid, mount):
        raise DriverError(f"refusing to fill {mount}: it is not a tmpfs mount of process {pid}")
    where = inside(pid, mount)
    stat = os.statvfs(where)
    total, free = stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize
    keep = leave if leave is not None else total * (free_percent or 0.0) / 100
    size = int(free - keep)
    if size <= 0:
        return
    balloon = where / BALLOON
    fd = os.open(balloon, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        os.close(fd)
        balloon.unlink(missing_ok=True)
        raise DriverError(f"could not fill {mount}: {exc.strerror}") from exc
    os.close(fd)


def deflate(pid: int, mount: str) -> None:
    """Remove the balloon (nothing happens if it is not there)."""
    inside(pid, mount).joinpath(BALLOON).unlink(missing_ok=True)
