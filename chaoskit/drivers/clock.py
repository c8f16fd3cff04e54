"""Clock skew through libfaketime, for processes and containers chaoskit starts.

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

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Self

from ..model import Fault
from ..model.faults import ClockSkewFault
from .base import AppliedFault, DriverConfig, DriverError, Target

__all__ = [
    "CONTAINER_SKEW_DIR",
    "ClockDriver",
    "container_faketime",
    "find_libfaketime",
    "process_faketime",
    "write_skew",
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
    """The path of libfaketime on this machine, or a DriverError saying how to install it."""
    for directory in _LIBRARY_DIRS:
        path = Path(directory, _LIBRARY)
        if path.is_file():
            return str(path)
    raise DriverError(
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


class ClockDriver:
    """Clock skew for targets started under libfaketime: their ``ref`` names the skew file."""

    name = "clock"

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver; skew files need no settings."""
        return cls()

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of a skew; refuses targets that were not started under libfaketime."""
        if not isinstance(fault, ClockSkewFault):
            raise DriverError(f"the clock driver cannot apply a {fault.type} fault")
        skew_file = target.ref.get("faketime")
        if not skew_file:
            where = "system.containers[]" if target.kind == "container" else "system.processes[]"
            raise DriverError(
                f"clock_skew needs {target.name} started under libfaketime: set "
                f"'faketime: true' on it in {where} (or on the stack)"
            )
        if not Path(skew_file).is_file():
            raise DriverError(f"the skew file of {target.name} is missing: {skew_file}")
        seconds = fault.skew.nanoseconds / 1e9
        return AppliedFault(
            self.name,
            "clock_skew",
            target,
            {"file": skew_file, "seconds": seconds},
            {"file": skew_file},
        )

    async def check(self, record: AppliedFault) -> None:
        """The skew file is still there."""
        if not Path(record.params["file"]).is_file():
            raise DriverError(
                f"the skew file of {record.target.name} is missing: {record.params['file']}"
            )

    async def apply(self, record: AppliedFault) -> None:
        """Write the skew."""
        path = Path(record.params["file"])
        if not path.parent.is_dir():
            raise DriverError(f"the skew file's folder is gone: {path.parent}")
        await asyncio.to_thread(write_skew, path, float(record.params["seconds"]))

    async def revert(self, record: AppliedFault) -> None:
        """Zero the skew in place (no free disk needed); nothing to do if the file is gone with
        the target."""
        path = Path(record.undo["file"])
        if path.is_file():
            await asyncio.to_thread(zero_skew, path)

    async def aclose(self) -> None:
        """Nothing is held open."""
