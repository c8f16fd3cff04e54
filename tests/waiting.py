"""Waiting for real processes and containers to reach a state, without bare sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get_json(url: str) -> object:
    return httpx.get(url, timeout=2, trust_env=False).json()
