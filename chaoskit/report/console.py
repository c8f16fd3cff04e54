"""The console during a run: a Rich live view on a terminal — phase and time left, the
steady-state metrics now, the faults applied, the safety valve — or plain log lines when the
output is not a terminal (CI logs, pipes)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["RunConsole"]

Snapshot = Callable[[], dict[str, Any]]


def _shown(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    if "latency" in metric or metric.startswith("p"):
        return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f}"
    return f"{value:.4g}"


class RunConsole:
    """Log lines for every event; on a terminal, also a live panel refreshed 4 times a second."""

    def __init__(self, live: bool | None = None) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.live_view = self.console.is_terminal if live is None else live
        self._snapshot: Snapshot | None = None
        self._live: Live | None = None
        self._began = time.monotonic()

    def log(self, line: str) -> None:
        """One event, time-stamped from the start of the run."""
        text = f"[{time.monotonic() - self._began:6.1f}s] {line}"
        if self._live is not None:
            self._live.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def follow(self, snapshot: Snapshot) -> None:
        """Show what ``snapshot`` describes (called by the runner once it has started)."""
        self._snapshot = snapshot

    def _render(self) -> Any:
        if self._snapshot is None:
            return Text("starting…")
        try:
            now = self._snapshot()
        except Exception as error:  # a view must never break the run
            return Text(f"(live view unavailable: {error})")
        phase = now["phase"] + (f" (trial {now['trial']})" if now.get("trial") else "")
        left = now.get("left")
        head = Text.assemble(
            ("chaoskit ", "bold"),
            f"{now['run']}  ",
            (phase, "bold cyan"),
            f"  {left:.0f}s left" if left is not None else "",
        )
        metrics = Table(box=None, pad_edge=False)
        metrics.add_column("metric")
        first: dict[str, Any] = next(iter(now["metrics"].values()), {})
        groups: list[str] = list(first)
        for group in groups:
            metrics.add_column(group, justify="right")
        for name, values in now["metrics"].items():
            metrics.add_row(name, *(_shown(values.get(g), name) for g in groups))
        faults = now["faults"] or ["none"]
        valve = now["valve"]
        style = (
            "green" if valve == "armed" else "yellow" if valve.startswith("armed") else "bold red"
        )
        failing = [
            Text.assemble(f"probe {name}: ", ("failing", "yellow"), f" — {error}")
            for name, error in (now.get("probe_errors") or {}).items()
        ]
        return Group(
            head,
            metrics,
            *failing,
            Text("faults applied: " + "; ".join(faults)),
            Text.assemble("safety valve: ", (valve, style)),
        )

    def __enter__(self) -> Self:
        if self.live_view:
            self._live = Live(
                get_renderable=self._render,
                console=self.console,
                refresh_per_second=4,
                transient=True,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, trace)
            self._live = None
