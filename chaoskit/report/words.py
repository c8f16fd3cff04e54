"""A run's outcome in plain words, shared by every report: what was broken, and what it did."""

from __future__ import annotations

from typing import Any

__all__ = ["faults_in_words", "headline"]

_OUTCOME = {
    "held": "HELD",
    "deviated": "DEVIATED",
    "inconclusive": "INCONCLUSIVE",
    "aborted": "ABORTED",
    "error": "ERROR",
}


def faults_in_words(result: dict[str, Any]) -> str:
    """The faults of the run, e.g. 'latency on backend-1; crash on api-2'."""
    hits: dict[str, list[str]] = {}
    for event in result.get("faults") or []:
        if event["event"] == "inject":
            names = hits.setdefault(event["fault"], [])
            if event["target"] not in names:
                names.append(event["target"])
    if not hits:
        return "no fault was applied"
    return "; ".join(f"{fault} on {', '.join(targets)}" for fault, targets in hits.items())


def headline(result: dict[str, Any]) -> tuple[str, str]:
    """(the outcome in capitals, one or two sentences saying what happened)."""
    outcome = str(result.get("outcome", "error"))
    verdict = result.get("verdict") or {}
    faults = faults_in_words(result)
    metrics = verdict.get("metrics", [])
    if outcome == "held":
        text = (
            f"The steady state held through {faults}: every judged metric stayed inside its margin."
        )
    elif outcome == "deviated":
        bad = [m["metric"] for m in metrics if m["verdict"] == "deviated"]
        text = (
            f"The steady state deviated under {faults}: {', '.join(bad) or 'the overall score'} "
            "changed beyond the margin."
        )
    elif outcome == "inconclusive":
        text = (
            f"Inconclusive under {faults}: the data could show neither a deviation nor that the "
            f"steady state held. {verdict.get('reason', '')}".strip()
        )
    elif outcome == "aborted":
        safety = result.get("safety") or {}
        text = (
            f"Aborted by the safety valve ({safety.get('detail', 'no detail')}) under {faults}; "
            "every fault was reverted first."
        )
    else:
        text = f"The run failed: {result.get('error') or 'no verdict was reached'}."
    return _OUTCOME.get(outcome, outcome.upper()), text
