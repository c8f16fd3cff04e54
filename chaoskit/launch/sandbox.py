"""Start a program in its own mount namespace with a size-capped tmpfs at its data path, so
that ``disk_full`` fills that tmpfs and never a real disk.

``python -m chaoskit.launch.sandbox --tmpfs /data:64MiB -- PROGRAM ARG...`` unshares the
mount namespace, makes every mount private (nothing leaks back to the host), mounts the tmpfs,
and replaces itself with the program (same pid, so signals and faults reach the program).
Needs root (CAP_SYS_ADMIN). Written on ctypes because Python 3.11 has no ``os.unshare``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

from ..exitcodes import ExitCode
from ..units import Size, UnitError

__all__ = ["command", "main"]

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def command(argv: list[str], tmpfs_path: str, size: Size) -> list[str]:
    """The argv that runs ``argv`` in a sandbox with a tmpfs of ``size`` at ``tmpfs_path``."""
    return [
        sys.executable, "-m", "chaoskit.launch.sandbox",
        "--tmpfs", f"{tmpfs_path}:{size.bytes}", "--", *argv,
    ]  # fmt: skip


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter(path: Path, size: int) -> None:
    """Unshare the mount namespace and mount a private tmpfs of ``size`` bytes at ``path``."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS) (needs root)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0777".encode()
    _check(libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0, options), f"mounting {path}")


def main(argv: list[str] | None = None) -> None:
    """Parse, enter the sandbox, exec the program."""
    parser = argparse.ArgumentParser(prog="chaoskit.launch.sandbox", description=__doc__)
    parser.add_argument("--tmpfs", required=True, help="PATH:SIZE, e.g. /data:64MiB")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    path, _, size_text = args.tmpfs.rpartition(":")
    try:
        size = Size.parse(size_text)
    except UnitError as exc:
        parser.error(str(exc))
    if not path.startswith("/") or not program:
        parser.error("give --tmpfs /ABSOLUTE/PATH:SIZE and a program after --")
    try:
        enter(Path(path), size.bytes)
    except OSError as exc:
        print(f"chaoskit sandbox: {exc}", file=sys.stderr)
        raise SystemExit(ExitCode.FAILED) from None  # this machine's limit, not a bug: not 70
    os.execvp(program[0], program)


if __name__ == "__main__":
    main()
