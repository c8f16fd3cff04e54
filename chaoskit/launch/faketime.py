"""Starting a process or container under libfaketime, so that ``clock_skew`` can move its clock.

Such a target runs with libfaketime preloaded, reading its offset from a *skew file* on the
host (bind-mounted read-only into a container). Injecting a skew rewrites that file atomically;
reverting writes ``+0``. Only the wall clock moves: monotonic time is left alone
(``FAKETIME_DONT_FAKE_MONOTONIC``), as a real clock step would. The file is read on every clock
call (``FAKETIME_NO_CACHE``, about 1.5 µs a call): libfaketime's cache is whole seconds, which
makes a change show up to two seconds late.

Out of reach: statically linked programs and Go programs (they do not call libc for the time).
Known flaw of libfaketime 0.9.10 (Debian 12): with monotonic time not faked it breaks
``clock_nanosleep`` on an absolute monotonic deadline, so Python's ``time.sleep`` raises EINVAL
under it; asyncio, threads, ``select`` and C ``nanosleep`` are unaffected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import LaunchError

__all__ = [
    "CONTAINER_SKEW_DIR",
    "container_faketime",
    "find_libfaketime",
    "process_faketime",
    "write_skew",
    "zero_skew",
]

_LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu/faketime",
    "/usr/lib/aarch64-linux-gnu/faketime",
    "/usr/lib/faketime",
    "/usr/local/lib/faketime",
    "/usr/lib64/faketime",
)
_LIBRARY = "libfaketime.so.1"
_WIDTH = 19
"""A skew file's offset is written this wide (``+0000000600.000000``): every offset takes the
same room, so a revert can zero it in place."""
CONTAINER_SKEW_DIR = "/run/chaoskit-faketime"
"""Where a container sees its skew file's directory (mounted read-only)."""
CONTAINER_LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
"""Where libfaketime lives inside chaoskit's stack image (Debian's path)."""


def find_libfaketime() -> str:
    """The path of libfaketime on this machine, or a LaunchError saying how to install it."""
    for directory in _LIBRARY_DIRS:
        path = Path(directory, _LIBRARY)
        if path.is_file():
            return str(path)
    raise LaunchError(
        "clock_skew needs libfaketime, which is not installed here: "
        "`apt-get install libfaketime` (Debian/Ubuntu) or your system's package"
    )


def _env(library: str, skew_file: str) -> dict[str, str]:
    return {
        "LD_PRELOAD": library,
        "FAKETIME_TIMESTAMP_FILE": skew_file,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


def write_skew(path: Path, seconds: float) -> None:
    """Set the offset a skew file holds, atomically (a reader never sees half a write)."""
    text = f"{seconds:+0{_WIDTH}.6f}\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".skew-")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def zero_skew(path: Path) -> None:
    """Set a skew file's offset to zero in place: every digit becomes ``0``, same length, so
    it needs no free disk (a revert must work on a full one). A reader meanwhile sees the
    offset's leading digits zeroed first: a value between the skew and zero, never beyond."""
    with path.open("r+b", buffering=0) as stream:
        text = stream.read(64)
        stream.seek(0)
        stream.write(bytes(48 if 48 <= c <= 57 else c for c in text))  # ASCII digits


def process_faketime(skew_file: Path) -> dict[str, str]:
    """Environment for a local process under libfaketime, its skew file created at ``+0``."""
    library = find_libfaketime()
    skew_file.parent.mkdir(parents=True, exist_ok=True)
    write_skew(skew_file, 0)
    return _env(library, str(skew_file))


def container_faketime(
    skew_dir: Path, name: str
) -> tuple[dict[str, str], dict[str, dict[str, str]], Path]:
    """Environment, volume and host skew file for a container under libfaketime.

    The image must contain libfaketime at Debian's path (chaoskit's stack image does).
    """
    skew_dir.mkdir(parents=True, exist_ok=True)
    skew_file = skew_dir / name
    write_skew(skew_file, 0)
    volumes = {str(skew_dir): {"bind": CONTAINER_SKEW_DIR, "mode": "ro"}}
    return _env(CONTAINER_LIBRARY, f"{CONTAINER_SKEW_DIR}/{name}"), volumes, skew_file
