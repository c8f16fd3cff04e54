"""``summary.md``: a run in a few lines for a pull-request comment."""

from __future__ import annotations

from typing import Any

from .words import cautions, headline, recovery_in_words, valve_in_words

__all__ = ["render_markdown"]


def _number(value: Any) -> str:
    return "—" if value is None else f"{value:.3g}"


def render_markdown(result: dict[str, Any]) -> str:
    """The verdict, each metric's judgement and time to recovery, as GitHub-flavoured Markdown."""
    word, sentence = headline(result)
    name = result["experiment"]["name"]
    lines = [f"### chaoskit: {name} — **{word}**", "", sentence, ""]
    verdict = result.get("verdict") or {}
    metrics = verdict.get("metrics", [])
    if metrics:
        lines += ["| metric | verdict | effect | interval | margin |", "|---|---|---|---|---|"]
        for m in metrics:
            effect = m.get("effect") or {}
            interval = (
                f"{_number(effect.get('low'))} … {_number(effect.get('high'))}" if effect else "—"
            )
            lines.append(
                f"| {m['metric']} | {m['verdict'].upper()} | {_number(effect.get('estimate'))} | "
                f"{interval} | {_number(m.get('margin'))} |"
            )
        lines.append("")
    for problem in (result.get("steady_state") or {}).get("problems") or []:
        lines.append(f"- not steady before any fault: {problem}")
    if verdict.get("stopped_early"):
        lines.append(f"- stopped early: {verdict['stopped_early']}")
    lines += [f"- recovery: {line}" for line in recovery_in_words(result)]
    lines += [f"- safety valve: {line}" for line in valve_in_words(result)]
    lines += [f"- caution: {line}" for line in cautions(result)]
    lines += ["", f"Run `{result['run']}`, exit code {result['exit_code']}."]
    return "\n".join(lines).rstrip() + "\n"
