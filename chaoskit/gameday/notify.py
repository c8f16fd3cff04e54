"""The plan's webhook: one JSON POST when a game day ends, if its ending is one it asked for."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..model.gameday import Notify
from .plan import DayResult

__all__ = ["ending", "notify"]


def ending(day: DayResult) -> str:
    """deviation, abort or error (the worst that happened), else finish. A system found not
    steady before its fault counts as a deviation: its steady state did not hold."""
    outcomes = {e.outcome for e in day.experiments}
    if outcomes & {"deviated", "not_steady"}:
        return "deviation"
    if "aborted" in outcomes:
        return "abort"
    if outcomes & {"error", "refused"}:
        return "error"
    return "finish"


def notify(target: Notify | None, day: DayResult, log: Callable[[str], None] = print) -> bool:
    """POST the day to the webhook; False (and a logged line) if it could not be told."""
    event = ending(day)
    if target is None or event not in target.on:
        return False
    try:
        answer = httpx.post(
            target.url, json={"event": event, **day.to_json()}, timeout=10, trust_env=True
        )
        answer.raise_for_status()
    except httpx.HTTPError as error:
        log(f"game day {day.plan}: the webhook {target.url} was not told: {error}")
        return False
    return True
