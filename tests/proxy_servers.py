"""``chaoskit proxy`` servers for tests whose targets are proxies: a real server on a free
loopback port, with the proxies asked for, stopped afterwards."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx


@contextlib.contextmanager
def proxy_server(names: list[str], upstream: str = "127.0.0.1:9") -> Iterator[str]:
    """A ``chaoskit proxy`` holding a proxy called each of ``names`` (to ``upstream``; by
    default a port nothing listens on); its API URL for the block."""
    server = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    try:
        found = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline())
        assert found is not None, "chaoskit proxy did not say where it listens"
        api = found.group(0)
        body = [{"name": name, "listen": "127.0.0.1:0", "upstream": upstream} for name in names]
        httpx.post(f"{api}/populate", json=body, trust_env=False).raise_for_status()
        yield api
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        server.stdout.close()
