"""Before anything is touched: may this experiment run here and now?

The site policy (with the current time: windows and blackouts), journals that crashed runs
left behind, and a load to measure the steady state with; each refusal is a
:class:`PreflightError` saying what to do.
"""

from __future__ import annotations

from pathlib import Path

from ..model import Experiment
from ..safety.policy import Policy
from .errors import PreflightError
from .journal import find_stale

__all__ = ["refuse_unless_allowed"]


def refuse_unless_allowed(experiment: Experiment, policy: Policy, reports: Path) -> None:
    """Raise :class:`PreflightError` unless ``experiment`` may run now, its runs in ``reports``."""
    violations = policy.check_now(experiment)  # the windows and blackouts too, by the clock
    if violations:
        raise PreflightError(
            "the site policy refuses this experiment: " + "; ".join(map(str, violations))
        )
    stale = find_stale(reports)
    if stale:
        names = "; ".join(f"{s.path} ({s.trouble()})" for s in stale)
        raise PreflightError(
            f"an earlier run left something behind ({names}): run `chaoskit rollback` first"
        )
    if experiment.load is None:
        raise PreflightError("`chaoskit run` needs a load section to measure the steady state")
