"""``summary.md``: a run in a few lines for a pull-request comment."""

from __future__ import annotations

from typing import Any

from ..model.result import RunResult
from .words import cautions, headline, recovery_in_words, valve_in_words

__all__ = ["render_markdown"]


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"


def render_markdown(result: RunResult) -> str:
    """The verdict, each metric's judgement and time to recovery, as GitHub-flavoured Markdown."""
    word, sentence = headline(result)
    lines = [f"### chaoskit: {result.name} — **{word}**", "", sentence, ""]
    verdict = result.verdict
    metrics = verdict.metrics if verdict is not None else []
    if metrics:
        lines += ["| metric | verdict | effect | interval | margin |", "|---|---|---|---|---|"]
        for m in metrics:
            effect = m.effect or {}
            interval = (
                f"{_number(effect.get('low'))} … {_number(effect.get('high'))}" if effect else "—"
            )
            lines.append(
                f"| {m.metric} | {m.verdict.upper()} | {_number(effect.get('estimate'))} | "
                f"{interval} | {_number(m.margin)} |"
            )
        lines.append("")
    for problem in result.steady_state.problems if result.steady_state is not None else []:
        lines.append(f"- not steady before any fault: {problem}")
    if verdict is not None and verdict.stopped_early:
        lines.append(f"- stopped early: {verdict.stopped_early}")
    lines += [f"- recovery: {line}" for line in recovery_in_words(result)]
    lines += [f"- safety valve: {line}" for line in valve_in_words(result)]
    lines += [f"- caution: {line}" for line in cautions(result)]
    lines += ["", f"Run `{result.run}`, exit code {result.exit_code}."]
    return "\n".join(lines).rstrip() + "\n"
