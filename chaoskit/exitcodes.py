"""Exit codes every chaoskit command uses, so a CI job can act on them."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What a chaoskit process tells its caller."""

    HELD = 0
    """The steady state held (or, for ``validate``: every file is valid)."""
    DEVIATED = 1
    """The steady state deviated: the system did not absorb the fault."""
    INVALID = 2
    """Invalid input or usage; nothing was touched."""
    ABORTED = 3
    """The safety valve aborted the run, after every fault was reverted."""
    INCONCLUSIVE = 4
    """The data could not show either outcome (too few samples, an interval too wide...)."""
    NOT_STEADY = 5
    """The system was not in its steady state before any fault (a declared limit already
    broken, most requests failing, a metric getting worse): nothing was injected."""
    FAILED = 6
    """The run could not be carried out, for a reason outside chaoskit: the system did not come
    up, or a driver lost its backend (the Toxiproxy API, the Docker engine) or could not revert
    a fault. The console and result.json say which; ``chaoskit rollback`` takes back whatever
    the journal says may still be applied."""
    KILLED = 137
    """Killed by SIGKILL, which no process can catch: by its watchdog when the run hung (the
    watchdog reverted every fault and wrote result.json saying so) or by someone else (the
    watchdog reverted every fault; there is no result)."""
    INTERNAL = 70
    """A bug in chaoskit (EX_SOFTWARE), and nothing else; every fault was still reverted where
    possible."""
