"""One experiment file, three tests: a local web server (``python -m http.server``) with the
proxy chaoskit places in front of it, load through that proxy, and one fault. The report,
game-day and pytest-plugin tests each run a variant."""

from __future__ import annotations

import sys
from pathlib import Path

SLOWED = "{type: latency, target: web, latency: 250ms}"
"""The fault that makes the web server deviate: 250 ms on a p50 of about a millisecond."""


def web_experiment(
    name: str,
    folder: Path,
    *,
    fault: str = SLOWED,
    rate: str = "40/s",
    margin: str = "50%",
    phases: str = "{warmup: 1s, baseline: 3s, fault: 3s, recovery: 1s}",
    probe: bool = False,
    idle: bool = False,
    description: str | None = None,
) -> str:
    """The experiment's text: ``probe`` adds a metric read from the server directly (it stays
    up through the fault); ``idle`` adds a process that nothing uses, to fault harmlessly."""
    python = sys.executable
    lines = [
        "version: 1",
        f"name: {name}",
        *([f"description: {description}"] if description else []),
        "system:",
        "  ports: [web, web_front]",
        "  processes:",
        "    - name: web",
        f'      command: ["{python}", "-m", "http.server", "--bind", "127.0.0.1", '
        '"${ports.web}"]',
        f'      cwd: "{folder}"',
        '      ready: {http: "http://127.0.0.1:${ports.web}/"}',
    ]
    if idle:
        lines += ["    - name: idle", f'      command: ["{python}", "-c", "import time; '
                  'time.sleep(600)"]']  # fmt: skip
    lines += [
        "targets:",
        "  web: {kind: process, select: web, port: web, listen: web_front}",
        *(["  idle: {kind: process, select: idle}"] if idle else []),
        f'load: {{url: "http://127.0.0.1:${{ports.web_front}}/", rate: {rate}, timeout: 2s}}',
        "steady_state:",
        f"  - {{name: p50, of: latency, margin: {margin}}}",
        "  - {name: errors, of: error_rate, max: 5%}",
    ]
    if probe:
        lines += ["  - {name: up, of: probe, interval: 250ms, min: 1,",
                  '      probe: {type: http, url: "http://127.0.0.1:${ports.web}/"}}']  # fmt: skip
    lines += [
        f"faults: [{fault}]",
        "blast_radius: {count: 1, seed: 1}",
        f"phases: {phases}",
        "safety: {abort_when: [{metric: errors, above: 50%, for: 2s}], max_duration: 2m}",
    ]
    return "\n".join(lines) + "\n"
