"""A run's outcome in plain words, shared by every report: what was broken, and what it did."""

from __future__ import annotations

from typing import Any

from ..model.result import MetricRecovery, RunResult

__all__ = [
    "LAGGING",
    "cautions",
    "faults_in_words",
    "headline",
    "recovery_in_words",
    "recovery_trials",
    "seconds",
    "valve_in_words",
    "valve_state",
]

LAGGING = 0.01
"""A send lag p99 (seconds) worth a caution beside latency figures."""

_OUTCOME = {
    "held": "HELD",
    "deviated": "DEVIATED",
    "inconclusive": "INCONCLUSIVE",
    "aborted": "ABORTED",
    "not_steady": "NOT STEADY",
    "error": "ERROR",
}


def seconds(value: float | None) -> str:
    """A duration for people: '0 s' only for exactly zero, milliseconds below a second."""
    if value is None:
        return "—"
    if value == 0:
        return "0 s"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def recovery_trials(ttr: MetricRecovery) -> list[dict[str, Any]]:
    """A metric's per-trial recovery: ``trial``, ``seconds`` (None: not back), ``recovered``
    (within the deadline) and ``watched`` — also from result files older than the per-trial
    record, where a trial counted as recovered unless censored."""
    if ttr.trials:
        return ttr.trials
    extra = ttr.model_extra or {}
    return [
        {"trial": i, "seconds": None if censored else seconds, "recovered": not censored,
         "watched": seconds, "out_at_revert": None}
        for i, (seconds, censored) in enumerate(
            zip(extra.get("durations", []), extra.get("censored", []), strict=False), start=1
        )
    ]  # fmt: skip


def recovery_in_words(result: RunResult) -> list[str]:
    """One line per metric and trial: how long it took to be back, or why it counts against
    the run."""
    recovery = result.verdict.recovery if result.verdict is not None else {}
    lines = []
    for name, ttr in recovery.items():
        if ttr.reason:
            lines.append(f"{name}: recovery not measured ({ttr.reason})")
            continue
        deadline = (ttr.model_extra or {}).get("deadline")
        for trial in recovery_trials(ttr):
            where = f"{name}, trial {trial['trial']}"
            if trial["seconds"] is None:
                lines.append(f"{where}: NOT RECOVERED by the end of the recovery phase")
            elif not trial["recovered"]:
                lines.append(
                    f"{where}: recovered in {seconds(trial['seconds'])}, beyond the "
                    f"{seconds(deadline)} allowed"
                )
            elif trial["seconds"] == 0 and trial.get("out_at_revert") is None:
                lines.append(
                    f"{where}: 0 s as recorded by an older chaoskit (it could not tell a metric "
                    "still out at the revert from one that never left)"
                )
            elif trial["seconds"] == 0:
                lines.append(f"{where}: never left its baseline band")
            else:
                lines.append(f"{where}: recovered in {seconds(trial['seconds'])}")
    return lines


def valve_in_words(result: RunResult) -> list[str]:
    """One line per abort condition: what it watched and why it did or did not fire."""
    lines = []
    for c in result.valve.get("conditions", []):
        worst = c.get("worst_shown") or (None if c.get("worst") is None else f"{c['worst']:.4g}")
        worst = "" if worst is None else f"; worst {worst}"
        lines.append(f"{c['condition']} ({c['watched']}): {valve_state(c)}{worst}")
    return lines


def valve_state(condition: dict[str, Any]) -> str:
    """Whether one abort condition fired, and if not, how close it came."""
    if condition["tripped"]:
        return "FIRED"
    if condition["longest_breach"] > 0:
        return (
            f"did not fire: longest breach {seconds(condition['longest_breach'])} of the "
            f"{seconds(condition['for'])} needed"
        )
    if condition["checks"] and condition["unknown"] == condition["checks"]:
        return "did not fire: its data never told (no outcome seen)"
    return "did not fire: never beyond its limit"


def faults_in_words(result: RunResult) -> str:
    """The faults of the run, e.g. 'latency on backend-1; crash on api-2'."""
    hits: dict[str, list[str]] = {}
    for event in result.faults:
        if event.event == "inject":
            names = hits.setdefault(str(event.fault), [])
            if event.target not in names:
                names.append(str(event.target))
    if not hits:
        return "no fault was applied"
    return "; ".join(f"{fault} on {', '.join(targets)}" for fault, targets in hits.items())


_STOPPED_BY = {
    "signal": "by a stop signal",
    "kill_file": "by hand (chaoskit halt or the kill-switch file)",
    "disk": "for want of disk under reports/",
    "journal": "because its journal could not be written",
    "watchdog": "because its watchdog died",
    "window": "because the site policy's time window closed",
}
"""How an abort is told when it was not one of the valve's conditions."""


def headline(result: RunResult) -> tuple[str, str]:
    """(the outcome in capitals, one or two sentences saying what happened)."""
    outcome = result.outcome
    verdict = result.verdict
    faults = faults_in_words(result)
    metrics = verdict.metrics if verdict is not None else []
    late = sorted({f.metric for f in verdict.recovery_failures} if verdict is not None else ())
    if outcome == "held":
        text = (
            f"The steady state held through {faults}: every judged metric stayed inside its "
            "margin and was back in time."
        )
    elif outcome == "deviated":
        bad = [m.metric for m in metrics if m.verdict == "deviated"]
        parts = []
        if bad:
            parts.append(f"{', '.join(bad)} changed beyond the margin")
        if late:
            parts.append(f"{', '.join(late)} did not recover in time")
        if verdict is not None and verdict.stopped_early:
            parts.append(verdict.stopped_early)
        text = f"The steady state deviated under {faults}: {'; '.join(parts) or 'see below'}."
    elif outcome == "not_steady":
        problems = result.steady_state.problems if result.steady_state is not None else []
        text = (
            "The system was not in its steady state before any fault, so nothing was "
            f"injected: {'; '.join(problems) or 'see below'}."
        )
    elif outcome == "inconclusive":
        text = (
            f"Inconclusive under {faults}: the data could show neither a deviation nor that the "
            f"steady state held. {(verdict.reason if verdict else '') or result.stopped or ''}"
        ).strip()
    elif outcome == "aborted" and result.safety is not None and result.safety.reason == "hung":
        text = (
            f"The run hung: {result.safety.detail}. "
            "There is no verdict; the faults were reverted from outside."
        )
    elif outcome == "aborted":
        safety = result.safety
        by = _STOPPED_BY.get(safety.reason if safety else "", "by the safety valve")
        text = (
            f"Aborted {by} ({safety.detail if safety else 'no detail'}) under {faults}; "
            "every fault was reverted first."
        )
    else:
        text = f"The run failed: {result.error or 'no verdict was reached'}."
    return _OUTCOME.get(outcome, outcome.upper()), text


def cautions(result: RunResult) -> list[str]:
    """What a reader should know before trusting the figures (a stalled runner, a load
    generator behind its schedule, a failing probe), one sentence each; none for a clean
    run."""
    said = []
    loop = result.event_loop or {}
    worst = loop.get("worst_lag") or 0.0
    if worst >= loop.get("distorting", float("inf")):
        said.append(
            f"the runner itself stalled for up to {seconds(worst)} "
            f"({loop.get('stalls', 0)} stall(s) of {seconds(loop['distorting'])} or more, "
            f"{seconds(loop.get('stalled'))} in all): latencies measured around then include "
            "up to that much of chaoskit's own delay, which the system under test never caused "
            "(a busy or swapping machine; run again on a quieter one to be sure)"
        )
    lag = (result.load or {}).get("send_lag_p99") or 0.0
    if lag >= LAGGING:
        said.append(
            f"the load generator sent 1 % of its requests {seconds(lag)} or more after they were "
            "due (send lag p99): their latencies include that delay, which the system under "
            "test never caused (raise load.workers, lower the rate, or use a quieter machine)"
        )
    for name, series in result.probes.items():
        errors = [e for e in series.get("error") or [] if e]  # older results: inline
        failed, readings = series.get("failed", len(errors)), series.get("readings")
        if failed:
            last = series.get("last_error") or errors[-1]
            of = readings if readings is not None else len(series["error"])
            said.append(f"probe '{name}' failed {failed} of {of} readings; last: {last}")
    said += _missing_samples(result)
    return said


def _missing_samples(result: RunResult) -> list[str]:
    """What of the samples files is not there to read, one sentence each."""
    records = [("requests", result.samples or {})]
    records += [(f"probe '{name}' readings", r) for name, r in result.probes.items()]
    said = []
    for what, record in records:
        if record.get("unwritten"):
            said.append(f"the {what} are incomplete: {record['unwritten']}")
        elif "file" in record and (
            result.folder is None or not (result.folder / record["file"]).is_file()
        ):
            said.append(
                f"the {what} file {record['file']} is not beside result.json: timelines and "
                "a new judgement need it (copy the whole run folder)"
            )
    return said
