"""The run console: the live panel's content, and plain lines when not on a terminal."""

from __future__ import annotations

import pytest
from rich.console import Console

from chaoskit.report.console import RunConsole


def test_live_panel_shows_phase_metrics_faults_and_valve() -> None:
    console = RunConsole(live=False)
    console.follow(
        lambda: {
            "run": "r1",
            "phase": "fault",
            "trial": 2,
            "left": 12.4,
            "metrics": {
                "p95_latency": {"experiment": 0.3125, "control": 0.0021},
                "errors": {"experiment": 0.0, "control": None},
            },
            "faults": ["latency on proxy backend-2"],
            "valve": "armed",
            "probe_errors": {"breakers": "no sample named 'breaker_opn'"},
        }
    )
    out = Console(record=True, width=100)
    out.print(console._render())
    text = out.export_text()
    assert "fault (trial 2)" in text and "12s left" in text
    assert "312.5 ms" in text and "2.1 ms" in text and "—" in text
    assert "latency on proxy backend-2" in text and "safety valve: armed" in text
    assert "probe breakers: failing — no sample named 'breaker_opn'" in text


def test_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with RunConsole(live=False) as console:
        console.log("injected pause on process backend-1")
    assert "s] injected pause on process backend-1" in capsys.readouterr().err


def test_a_broken_snapshot_never_breaks_the_view() -> None:
    console = RunConsole(live=False)

    def broken() -> dict[str, object]:
        raise RuntimeError("boom")

    console.follow(broken)
    out = Console(record=True)
    out.print(console._render())
    assert "live view unavailable: boom" in out.export_text()
