"""Bringing real systems up and down: processes, containers and the reference stack, with the
targets they offer, and nothing left running afterwards."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pytest

from chaoskit.model import System
from chaoskit.runner.plan import PreflightError
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
    # its own labels, and the run's, as the container carries them (a host fault reaches the
    # containers this run started)
    assert seen["name"] == name and seen["labels"] == {"tier": "front", "chaoskit.run": "run-1"}
    assert seen["tmpfs"] == "/data" and seen["faketime"].endswith(f"faketime/{name}")
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(seen["id"])


def test_a_missing_image_is_a_clear_error(tmp_path: Path, docker_client: Any) -> None:
    system = {"containers": [{"name": f"x-{uuid.uuid4().hex[:6]}", "image": "chaoskit/none:0"}]}
    with pytest.raises(PreflightError, match="never pulls from a registry"):
        up(system, tmp_path, lambda live: None)


def unstartable(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Processes that cannot even be started, each with the refusal's message."""
    script = tmp_path / "app.py"
    script.write_text("print('hello')\n")
    script.chmod(0o644)
    nowhere = tmp_path / "nowhere"
    return {
        "no such program": (
            {"command": ["pythn3", "app.py"]},
            "cannot start process 'api': pythn3: no such file or directory; "
            "check system.processes[1].command",
        ),
        "not executable": (
            {"command": [str(script)]},
            f"cannot start process 'api': {script}: permission denied; "
            "check system.processes[1].command",
        ),
        "no such cwd": (
            {"command": ["sleep", "60"], "cwd": str(nowhere)},
            f"cannot start process 'api': cwd {nowhere}: no such file or directory; "
            "check system.processes[1].cwd",
        ),
        "no such program, in a sandbox": (  # the sandbox would start, then fail to exec it
            {"command": ["pythn3", "app.py"], "tmpfs": {"path": "/data", "size": "1MiB"}},
            "cannot start process 'api': pythn3: no executable file by that name (on PATH, or "
            "from its cwd); check system.processes[1].command",
        ),
    }


@pytest.mark.parametrize(
    "case", ["no such program", "not executable", "no such cwd", "no such program, in a sandbox"]
)
def test_a_process_that_cannot_be_started_is_refused_and_the_rest_stopped(
    tmp_path: Path, case: str
) -> None:
    """Not a system that did not come up (exit 6) but a refusal (exit 2) that names the process,
    what is wrong and where in the file; the process started before it is stopped."""
    fields, message = unstartable(tmp_path)[case]
    system = System.model_validate(
        {"processes": [{"name": "first", "command": ["sleep", "600"]}, {"name": "api", **fields}]}
    )
    started: list[dict[str, Any]] = []

    async def scenario() -> None:
        async with bring_up(system, "run-1", tmp_path, on_start=started.append):
            raise AssertionError("it came up")

    with pytest.raises(PreflightError) as refused:
        asyncio.run(scenario())
    assert str(refused.value) == message
    [first] = started
    assert first["name"] == "first" and not running(first["pid"])


def test_chaoskit_run_refuses_a_process_it_cannot_start(tmp_path: Path) -> None:
    """Exit 2 and one line saying what to fix, no traceback; nothing left running, and the
    journal closed (the next run is not held up by it)."""
    experiment = tmp_path / "typo.yaml"
    experiment.write_text(
        "version: 1\nname: typo\n"
        "system:\n  ports: [web]\n  processes:\n"
        "    - {name: first, command: [sleep, '600']}\n"
        "    - {name: api, command: [pythn3, app.py]}\n"
        "targets: {api: {kind: process, select: api}}\n"
        "load: {url: 'http://127.0.0.1:${ports.web}/', rate: 10/s, timeout: 1s}\n"
        "steady_state: [{name: errors, of: error_rate, max: 5%}]\n"
        "faults: [{type: pause, target: api}]\n"
        "blast_radius: {count: 1}\n"
        "phases: {warmup: 0s, baseline: 1s, fault: 1s, recovery: 1s}\n"
        "safety: {abort_when: [{metric: errors, above: 50%, for: 2s}]}\n"
    )
    reports = tmp_path / "reports"
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit", "run", str(experiment), "--reports", str(reports)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr == (
        "chaoskit run: refused, nothing was touched: cannot start process 'api': pythn3: no such "
        "file or directory; check system.processes[1].command\n"
    )
    [journal] = reports.glob("*/journal.jsonl")
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    [first] = [e["part"] for e in events if e["event"] == "started"]
    assert first["name"] == "first" and not running(first["pid"])
    assert events[-1]["event"] == "close"


@pytest.fixture
def empty_image(docker_client: Any) -> Iterator[str]:
    """An image with no files at all, imported from an empty tar (no registry): any command
    given to it cannot be executed."""
    tag = f"chaoskit-test/empty:{uuid.uuid4().hex[:8]}"
    repository, _, version = tag.partition(":")
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    docker_client.api.import_image_from_data(empty.getvalue(), repository=repository, tag=version)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_a_container_whose_command_cannot_be_executed_is_refused_and_removed(
    tmp_path: Path, docker_client: Any, empty_image: str
) -> None:
    """The engine refuses to start it (a 400: no such executable): before, its APIError went
    through as a bug (exit 70)."""
    name = f"x-{uuid.uuid4().hex[:6]}"
    system = {"containers": [{"name": name, "image": empty_image, "command": ["pythn3", "x.py"]}]}
    with pytest.raises(PreflightError) as refused:
        up(system, tmp_path, lambda live: None)
    message = str(refused.value)
    assert message.startswith(f"cannot start container '{name}': ")
    assert '"pythn3": executable file not found' in message
    assert message.endswith("; check system.containers[0].command (and the image's entrypoint)")
    assert docker_client.containers.list(all=True, filters={"name": name}) == []
