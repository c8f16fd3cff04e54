"""How a person stops a run: the first SIGINT (Ctrl-C), SIGTERM or SIGHUP stops it — every
fault is reverted, then result.json, the reports and the history entry are written — and the
later ones are acknowledged, never let through, so nothing is cut short. SIGKILL is the only way
to end a run at once; its watchdog then reverts every fault.

Python-level handlers (not the event loop's): they stay in force from before the run starts to
after its last report is written, across ``asyncio.run`` (which would otherwise install its own
SIGINT handler and remove ours with the loop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Self

__all__ = ["STOP_SIGNALS", "StopSignals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say_on_stderr(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed terminal cannot stop the run
        print(text, file=sys.stderr, flush=True)


class StopSignals:
    """Catches the stop signals while in its ``with`` block; :meth:`connect` says whom the first
    one stops (at once if it came before)."""

    def __init__(self, say: Callable[[str], None] = _say_on_stderr) -> None:
        self.received: list[str] = []
        self._say = say
        self._stop: Callable[[str], object] | None = None
        self._before: dict[int, object] = {}

    @property
    def first(self) -> str | None:
        """The name of the signal that stopped the run, if one did."""
        return self.received[0] if self.received else None

    def connect(self, stop: Callable[[str], object]) -> None:
        """Call ``stop`` with the signal's name on the first signal (now, if it already came);
        it runs in the signal handler, so it must only schedule work (e.g. through
        ``loop.call_soon_threadsafe``)."""
        self._stop = stop
        if self.received:
            stop(self.received[0])

    def disconnect(self) -> None:
        """Signals from now on are only acknowledged (the run is over; its reports follow)."""
        self._stop = None

    def __enter__(self) -> Self:
        for sig in STOP_SIGNALS:
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._before.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        self.received.append(name)
        if number == signal.SIGHUP:
            _leave_a_closed_terminal()
        if len(self.received) > 1:
            self._say(
                f"{name}: already stopping (every fault is reverted, then the reports are "
                "written); SIGKILL ends it at once and leaves the reverts to its watchdog"
            )
            return
        self._say(f"{name}: stopping the run: reverting every fault, then writing the reports")
        if self._stop is not None:
            self._stop(name)


def _leave_a_closed_terminal() -> None:
    """After a hang-up, write to /dev/null instead of a terminal that may be gone (a write to
    it would fail and end the run before its reports)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            if os.isatty(fd):
                os.dup2(null, fd)
        os.close(null)
