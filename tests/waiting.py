"""Waiting for real processes and containers to reach a state (no bare sleeps), and the two
HTTP questions the integration tests keep asking them."""

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


def answers(url: str, timeout: float = 0.5) -> bool:
    """Does ``url`` answer 200 within ``timeout`` seconds?"""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def post_item(base: str) -> int:
    """The status of writing one item through ``base``/items (201 written, 507 disk full)."""
    return httpx.post(f"{base}/items", json={"name": "x"}, timeout=3, trust_env=False).status_code
