"""Bringing real systems up and down: processes, containers and the reference stack, with the
targets they offer, and nothing left running afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest

from chaoskit.model import System
from chaoskit.runner.system import BringUpError, RunningSystem, bring_up


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] != "Z"


def closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def up(system: dict[str, Any], tmp_path: Path, check: Any) -> Any:
    """Bring ``system`` up, hand it to ``check``, bring it down; return what check returned."""

    async def scenario() -> Any:
        async with bring_up(System.model_validate(system), "run-1", tmp_path) as live:
            return check(live)

    return asyncio.run(scenario())


def test_processes_with_ports_env_ready_and_faketime(tmp_path: Path) -> None:
    system = {
        "ports": ["web"],
        "processes": [
            {
                "name": "web",
                "command": [
                    sys.executable,
                    "-m",
                    "http.server",
                    "--bind",
                    "127.0.0.1",
                    "${ports.web}",
                ],
                "env": {"RUN": "${run.id}"},
                "labels": {"tier": "front"},
                "ready": {"http": "http://127.0.0.1:${ports.web}/"},
                "faketime": True,
            }
        ],
    }

    def check(live: RunningSystem) -> tuple[int, int, dict[str, Any]]:
        [target] = live.targets()
        port = live.ports["web"]
        assert httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).status_code == 200
        environ = Path(f"/proc/{target.ref['pid']}/environ").read_bytes().split(b"\0")
        assert b"RUN=run-1" in environ
        return target.ref["pid"], port, {"name": target.name, "labels": target.labels, **target.ref}

    pid, port, seen = up(system, tmp_path, check)
    assert seen["name"] == "web" and seen["labels"] == {"tier": "front"}
    assert seen["faketime"] == str(tmp_path / "faketime" / "web")
    assert not running(pid) and closed(port)


def test_a_process_that_dies_before_ready_is_a_clear_error(tmp_path: Path) -> None:
    system = {
        "processes": [
            {
                "name": "doomed",
                "command": [sys.executable, "-c", "import sys; print('no config'); sys.exit(4)"],
                "ready": {"tcp": "127.0.0.1:9"},
            }
        ]
    }
    with pytest.raises(
        BringUpError,
        match=r"process doomed exited with 4 before it was ready; its last output:\nno config",
    ):
        up(system, tmp_path, lambda live: None)


def test_the_reference_stack_offers_its_proxies_and_backends(tmp_path: Path) -> None:
    def check(live: RunningSystem) -> tuple[dict[str, int], list[tuple[str, str]], list[int]]:
        targets = live.targets()
        frontend = live.ports["frontend"]
        assert httpx.get(f"http://127.0.0.1:{frontend}/health/live", trust_env=False).is_success
        pids = [t.ref["pid"] for t in targets if t.kind == "process"]
        return live.ports, sorted((t.kind, t.name) for t in targets), pids

    ports, targets, pids = up({"stack": {"replicas": 2}}, tmp_path, check)
    assert targets == [
        ("process", "backend-1"),
        ("process", "backend-2"),
        ("proxy", "backend-1"),
        ("proxy", "backend-2"),
    ]
    assert closed(ports["frontend"]) and closed(ports["toxiproxy"])
    assert not any(running(pid) for pid in pids)


def test_a_stack_that_misses_its_ready_timeout_says_which_setting_to_raise(
    tmp_path: Path,
) -> None:
    """A bound too short for any machine stands in for a loaded machine (the same path)."""
    with pytest.raises(BringUpError) as raised:
        up({"stack": {"replicas": 1, "ready_timeout": "1ms"}}, tmp_path, lambda live: None)
    message = str(raised.value)
    assert "did not come up within 0.001s" in message
    assert "system.stack.ready_timeout" in message
    assert not (tmp_path / "stack-ports.json").exists()


@pytest.mark.docker
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_container_with_ports_tmpfs_and_faketime(
    tmp_path: Path, docker_client: Any, stack_image: str
) -> None:
    name = f"web-{uuid.uuid4().hex[:8]}"
    system = {
        "containers": [
            {
                "name": name,
                "image": stack_image,
                "command": ["http.server", "8000"],
                "ports": {"web": 8000},
                "tmpfs": {"path": "/data", "size": "1MiB"},
                "faketime": True,
                "labels": {"tier": "front"},
                "ready": {"http": "http://127.0.0.1:${ports.web}/"},
            }
        ]
    }

    # The stack image's entrypoint is "python -m": the command names a module.
    def check(live: RunningSystem) -> dict[str, Any]:
        [target] = live.targets()
        return {"name": target.name, "labels": target.labels, **target.ref}

    seen = up(system, tmp_path, check)
    assert seen["name"] == name and seen["labels"] == {"tier": "front"}
    assert seen["tmpfs"] == "/data" and seen["faketime"].endswith(f"faketime/{name}")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(seen["id"])


def test_a_missing_image_is_a_clear_error(tmp_path: Path, docker_client: Any) -> None:
    system = {"containers": [{"name": f"x-{uuid.uuid4().hex[:6]}", "image": "chaoskit/none:0"}]}
    with pytest.raises(BringUpError, match="never pulls from a registry"):
        up(system, tmp_path, lambda live: None)
