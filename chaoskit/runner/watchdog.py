"""The dead-man's switch: a separate process that reverts whatever the journal says is still
applied once the runner stops renewing its lease — because it died (its end of the pipe
closes at once, even on SIGKILL, so this is noticed at once) or hung (no renewal within the
lease; the hung runner is killed first, so it cannot wake up and carry on, and the watchdog
writes the run's result.json, reports and history entry in its place).

The runner starts it with :func:`start`, renews with :meth:`Watchdog.renew` from its event
loop (so a blocked loop counts as hung once it has been blocked for the whole lease) and ends
it with :meth:`Watchdog.finish`. It runs in a session of its own, so the Ctrl-C that stops the
runner does not stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..drivers.process import start_ticks
from ..drivers.registry import BUILTIN_DRIVERS, load_factory
from .journal import JournalError, read_journal
from .rollback import REVERT_PATIENCE, rollback

__all__ = ["Watchdog", "main", "start"]

_FINISHED = b"q"


class Watchdog:
    """The runner's handle on its watchdog process."""

    def __init__(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        if process.stdin is None:
            raise ValueError("the watchdog must be started with stdin=subprocess.PIPE")
        self.process = process
        self.timeout = timeout
        self._stdin = process.stdin
        self._pipe = process.stdin.fileno()
        os.set_blocking(self._pipe, False)

    def renew(self) -> None:
        """Renew the lease (cheap; call it every ``timeout / 4`` or so)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._pipe, b".")

    async def keep_renewing(self) -> None:
        """Renew from the event loop until cancelled: a blocked loop stops the renewals."""
        while True:
            self.renew()
            await asyncio.sleep(self.timeout / 4)

    def guard(self) -> tuple[str, str] | None:
        """A safety-valve guard: the run must stop if its watchdog is gone (nobody would
        revert its faults if it died too)."""
        code = self.process.poll()
        if code is None:
            return None
        return "watchdog", (
            f"the watchdog (pid {self.process.pid}) exited with code {code}: nobody would revert "
            "the faults if this run died too"
        )

    def finish(self, timeout: float = 30.0) -> int:
        """Tell it the run ended; it reverts anything still journaled, then exits."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._pipe, _FINISHED)
        with contextlib.suppress(BrokenPipeError):
            self._stdin.close()
        return self.process.wait(timeout)


LEASE = 30.0
"""Seconds without a renewal before a runner counts as hung: longer than any stall a busy or
swapping machine causes, since only a hang (never a death) waits for it."""


def start(
    journal: Path,
    timeout: float = LEASE,
    log: Path | None = None,
    *,
    patience: float = REVERT_PATIENCE,
) -> Watchdog:
    """Start the watchdog for this process's run, journaled at ``journal``; its reverts keep
    trying a backend that does not answer for ``patience`` seconds."""
    pid = os.getpid()
    argv = [
        sys.executable, "-m", "chaoskit.runner.watchdog", "--journal", str(journal),
        "--runner-pid", str(pid), "--runner-start", str(start_ticks(pid)),
        "--timeout", str(timeout), "--patience", str(patience),
    ]  # fmt: skip
    output = open(log or journal.with_name("watchdog.log"), "ab")  # noqa: SIM115 - the child owns it
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=output, stderr=output, start_new_session=True
        )
    finally:
        output.close()
    return Watchdog(process, timeout)


def _load_drivers() -> None:
    """Import the built-in drivers while the runner lives, so that reverting after its death
    does not wait for them (the Docker SDK alone takes 0.1 s; plugins' stay lazy)."""
    for reference in BUILTIN_DRIVERS.values():
        load_factory(reference)


def _wait_for_runner(timeout: float) -> str:
    """Read renewals until the runner finishes, dies or stops renewing; say which."""
    while True:
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return "hung"
        data = os.read(0, 4096)
        if not data:
            return "gone"
        if _FINISHED in data:
            return "finished"


def _kill_runner(pid: int, started: int) -> None:
    """SIGKILL the hung runner and wait until it is gone (it is not our child: poll)."""
    if start_ticks(pid) != started:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while start_ticks(pid) == started and time.monotonic() < deadline:
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    """Watch one runner; on its end, revert what its journal says is applied."""
    parser = argparse.ArgumentParser(prog="chaoskit.runner.watchdog", description=__doc__)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--runner-pid", type=int, required=True)
    parser.add_argument("--runner-start", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=LEASE)
    parser.add_argument("--patience", type=float, default=REVERT_PATIENCE)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _load_drivers()
    how = _wait_for_runner(args.timeout)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    if how == "hung":
        _kill_runner(args.runner_pid, args.runner_start)
    try:
        state = read_journal(args.journal)
    except JournalError as error:
        print(f"{stamp} runner {how}; cannot read its journal: {error}", flush=True)
        return 1
    lines: list[str] = []
    ok = True
    if not state.pending and not state.running:
        print(f"{stamp} runner {how}; nothing left applied", flush=True)
    else:
        print(
            f"{stamp} runner {how}; reverting {len(state.pending)} fault(s), "
            f"stopping {len(state.running)} part(s)",
            flush=True,
        )
        done = asyncio.run(rollback(args.journal, patience=args.patience))
        ok = done.ok
        lines = done.lines()
        for line in lines:
            print(f"  {line}", flush=True)
    if how == "hung":
        from .hung import record_hung_run  # noqa: PLC0415 - heavy; a death must not wait for it

        detail = (
            f"the runner gave no sign of life for {args.timeout:g}s (safety.watchdog_lease); "
            "its watchdog killed it and "
            + ("took back: " + "; ".join(lines) if lines else "found nothing left applied")
        )
        for said in record_hung_run(args.journal.parent, detail):
            print(f"  {said}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
