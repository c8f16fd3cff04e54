"""``summary.md``: a run in a few lines for a pull-request comment."""

from __future__ import annotations

from typing import Any

from .words import headline

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
    for metric, ttr in (verdict.get("recovery") or {}).items():
        if "median" in ttr:
            median = "not recovered" if ttr["median"] is None else f"{ttr['median']:.1f} s"
            lines.append(f"- time to recovery ({metric}): {median}")
    lines += ["", f"Run `{result['run']}`, exit code {result['exit_code']}."]
    return "\n".join(lines).rstrip() + "\n"
