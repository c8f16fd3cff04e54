"""Real small filesystems for tests that need a disk to fill up or turn read-only: a tmpfs
mounted for the test (mounting needs root, as CI has; elsewhere the test is skipped)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``1m``, ``40m``) mounted at ``mount`` for the block."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def free(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s filesystem until at most ``leave`` bytes are free (0: to the last
    byte); the filler file, to free the room again."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as stream:
        try:
            while free(folder) > leave:
                stream.write(b"\0" * min(2**20, max(4096, free(folder) - leave)))
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    return filler
