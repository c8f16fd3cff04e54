"""``chaoskit proxy`` as a user runs it: a real process, its output, its signals, its config."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import Upstream, connect

COMMAND = [sys.executable, "-m", "chaoskit", "proxy"]


class Running:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.api = httpx.Client(base_url=url, timeout=5, trust_env=False)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.api.close()
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


def start(*args: str) -> Running:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    if found is None:
        process.kill()
        raise AssertionError(f"no API URL in {line!r}: {process.communicate()}")
    return Running(process, found.group(0))


@pytest.fixture
def running() -> Iterator[Running]:
    proxy = start()
    yield proxy
    if proxy.process.poll() is None:
        proxy.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_logs_each_change_and_shuts_down_cleanly(
    running: Running, upstream: Upstream, sig: int
) -> None:
    created = running.api.post(
        "/proxies", json={"name": "db", "listen": "127.0.0.1:0", "upstream": upstream.address}
    ).json()
    running.api.post("/proxies/db/toxics", json={"type": "latency", "attributes": {"latency": 5}})
    running.api.delete("/proxies/db/toxics/latency_downstream")
    client = connect(int(created["listen"].rsplit(":", 1)[1]))
    client.sendall(b"x")
    upstream.accept()
    code, err = running.stop(sig)
    assert code == 0
    changes = [line for line in err.splitlines() if " INFO " in line]
    assert len(changes) == 3
    assert "created proxy db" in changes[0]
    assert "added toxic latency_downstream" in changes[1]
    assert "removed toxic latency_downstream" in changes[2]
    assert client.recv(10) == b""  # its connections were closed on the way out


def test_config_file_with_initial_toxics(tmp_path: Path, upstream: Upstream) -> None:
    config = tmp_path / "proxies.json"
    config.write_text(
        json.dumps(
            [
                {
                    "name": "cfg",
                    "listen": "127.0.0.1:0",
                    "upstream": upstream.address,
                    "toxics": [{"type": "timeout"}],
                    "initial_toxics": [{"type": "latency", "attributes": {"latency": 7}}],
                }
            ]
        )
    )
    proxy = start("--config", str(config), "--seed", "3")
    try:
        shown = proxy.api.get("/proxies/cfg").json()
        assert shown["upstream"] == upstream.address
        assert [t["type"] for t in shown["toxics"]] == ["latency"]  # "toxics" ignored, as upstream
    finally:
        assert proxy.stop()[0] == 0


def test_bad_config_is_logged_and_the_server_starts(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text('{"not": "a list"}')
    proxy = start("--config", str(config))
    try:
        assert proxy.api.get("/proxies").json() == {}
    finally:
        code, err = proxy.stop()
    assert code == 0
    assert "Failed to populate proxies from file" in err


def test_user_errors_are_clear_and_start_nothing(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*COMMAND, "--config", str(tmp_path / "none.json")],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert missing.returncode == 2
    assert "is not a file" in missing.stderr and "Traceback" not in missing.stderr
    busy = socket.create_server(("127.0.0.1", 0))
    with busy:
        taken = subprocess.run(
            [*COMMAND, "--port", str(busy.getsockname()[1])],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert taken.returncode == 2
    assert "cannot listen on 127.0.0.1:" in taken.stderr
    assert "Traceback" not in taken.stderr


def test_a_non_loopback_api_is_announced() -> None:
    proxy = subprocess.Popen(
        [*COMMAND, "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proxy.stdout is not None
    assert "http://0.0.0.0:" in proxy.stdout.readline()
    proxy.send_signal(signal.SIGTERM)
    _, err = proxy.communicate(timeout=10)
    assert proxy.returncode == 0
    assert "anyone who can reach it can inject faults" in err
