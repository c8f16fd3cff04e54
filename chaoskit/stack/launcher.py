"""``chaoskit stack up``: the whole reference stack on loopback, as separate processes.

Frontend → Toxiproxy proxies (one per backend) → backends, kept alive by the supervisor.
Every part is its own process, started with an argv list, so chaoskit can break each one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from . import contract

__all__ = ["StackPlan", "free_ports", "plan", "run_stack"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` ports free right now on ``host`` (the kernel picks them)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


@dataclass
class StackPlan:
    """Where every part of the stack listens."""

    replicas: int
    frontend: int
    supervisor: int
    toxiproxy: int | None
    backends: list[int]
    proxies: list[int]
    data_root: Path
    backoff: tuple[float, float, float] = (0.5, 8.0, 30.0)
    seed: int | None = None
    mode: Literal["process", "container"] = "process"
    tmpfs: int | None = None
    """Bytes of tmpfs for each backend's data (for disk_full); container mode: 64 MiB if unset."""
    faketime: Path | None = None
    """A folder of libfaketime skew files, one a backend (for clock_skew); None: real time."""

    def skew_file(self, name: str) -> Path | None:
        """The skew file backend ``name`` reads, when the stack runs under libfaketime."""
        return None if self.faketime is None else self.faketime / name

    def names(self) -> list[str]:
        """Backend names, ``backend-1`` … ``backend-N``."""
        return [f"backend-{i}" for i in range(1, self.replicas + 1)]

    def ports(self) -> dict[str, int]:
        """Ports by the names experiments use in ``${ports.NAME}``."""
        found = {"frontend": self.frontend}
        if self.mode == "process":
            found["supervisor"] = self.supervisor
        if self.toxiproxy is not None:
            found["toxiproxy"] = self.toxiproxy
        found.update(zip(self.names(), self.backends, strict=True))
        return found

    def backend_urls(self) -> dict[str, str]:
        """What the frontend calls: each backend's proxy, or the backend itself without proxies."""
        ports = self.proxies if self.toxiproxy is not None else self.backends
        return {n: f"http://127.0.0.1:{p}" for n, p in zip(self.names(), ports, strict=True)}


def embedded_proxy_available() -> bool:
    """True once chaoskit's own Toxiproxy-compatible server is installed."""
    return importlib.util.find_spec("chaoskit.proxy") is not None


def plan(  # noqa: PLR0917 - every knob of `chaoskit stack up`
    replicas: int = 3,
    base_port: int = 0,
    proxies: bool = True,
    data_root: Path | None = None,
    seed: int | None = None,
    mode: Literal["process", "container"] = "process",
) -> StackPlan:
    """Choose ports: consecutive from ``base_port``, or free ones when it is 0."""
    if not 1 <= replicas <= 16:
        raise ValueError(f"replicas must be from 1 to 16, got {replicas}")
    count = 3 + 2 * replicas
    if base_port:
        if not 1024 <= base_port <= 65535 - count:
            raise ValueError(f"--base-port must leave room for {count} ports above 1024")
        ports = list(range(base_port, base_port + count))
    else:
        ports = free_ports(count)
    root = data_root or Path(tempfile.mkdtemp(prefix="chaoskit-stack-"))
    return StackPlan(
        replicas=replicas,
        frontend=ports[0],
        supervisor=ports[1],
        toxiproxy=ports[2] if proxies and mode == "process" else None,
        backends=ports[3 : 3 + replicas],
        proxies=ports[3 + replicas :],
        data_root=root,
        seed=seed,
        mode=mode,
    )


READY_TIMEOUT = 120.0
"""Seconds the stack gets to answer: Python start-up alone takes seconds on a loaded machine."""


def _wait_http(url: str, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: its process exited with {process.returncode} at start")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=0.5, trust_env=False).status_code < 500:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in time")


@contextlib.contextmanager
def run_stack(stack: StackPlan, timeout: float = READY_TIMEOUT) -> Iterator[StackPlan]:
    """Start every part, wait until it answers, yield; stop everything on the way out.

    ``timeout`` bounds the wait for every part to answer, image build excepted; a part whose
    process exits fails at once, so a generous bound costs nothing when something is broken.
    """
    runner = _run_processes if stack.mode == "process" else _run_containers
    with runner(stack, timeout):
        yield stack


@contextlib.contextmanager
def _run_processes(stack: StackPlan, timeout: float) -> Iterator[None]:
    """Process mode: proxies, supervisor (which starts the backends) and frontend."""
    python = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started: list[subprocess.Popen[bytes]] = []
    deadline = time.monotonic() + timeout

    def start(argv: list[str], ready_url: str) -> None:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        started.append(process)
        _wait_http(ready_url, deadline, process)

    try:
        if stack.toxiproxy is not None:
            api = f"http://127.0.0.1:{stack.toxiproxy}"
            start(
                [python, "-m", "chaoskit", "proxy", "--port", str(stack.toxiproxy)],
                api + "/version",
            )
            routes = [
                {"name": n, "listen": f"127.0.0.1:{p}", "upstream": f"127.0.0.1:{b}"}
                for n, p, b in zip(stack.names(), stack.proxies, stack.backends, strict=True)
            ]
            httpx.post(
                api + "/populate", json=routes, timeout=5, trust_env=False
            ).raise_for_status()
        low, high, cooldown = stack.backoff
        supervisor = [
            python, "-m", "chaoskit.stack.supervisor", "--port", str(stack.supervisor),
            "--data-root", str(stack.data_root), "--min-backoff", str(low),
            "--max-backoff", str(high), "--cooldown", str(cooldown),
            *[arg for port in stack.backends for arg in ("--backend-port", str(port))],
        ]  # fmt: skip
        if stack.seed is not None:
            supervisor += ["--seed", str(stack.seed)]
        if stack.tmpfs is not None:
            supervisor += ["--tmpfs", str(stack.tmpfs)]
        if stack.faketime is not None:
            supervisor += ["--faketime", str(stack.faketime)]
        start(supervisor, f"http://127.0.0.1:{stack.supervisor}/health/live")
        for port in stack.backends:
            _wait_http(f"http://127.0.0.1:{port}/health/ready", deadline, started[-1])
        frontend = [python, "-m", "chaoskit.stack.frontend", "--port", str(stack.frontend)]
        for name, url in stack.backend_urls().items():
            frontend += ["--backend", f"{name}={url}"]
        start(frontend, f"http://127.0.0.1:{stack.frontend}/health/live")
        yield
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


CONTAINER_PORT = 8080


@contextlib.contextmanager
def _run_containers(stack: StackPlan, timeout: float) -> Iterator[None]:
    """Container mode: backends and frontend as containers on their own Docker network.

    The Docker engine's restart policy plays the supervisor; ports are published on 127.0.0.1
    only; each backend keeps its data on a size-capped tmpfs (for disk_full).
    """
    import docker  # noqa: PLC0415 - the Docker SDK is loaded only in container mode
    import docker.errors  # noqa: PLC0415

    from ..launch.faketime import container_faketime  # noqa: PLC0415
    from .image import ensure_image  # noqa: PLC0415

    with contextlib.closing(docker.from_env()) as client:  # closed on every path
        image = ensure_image(client, log=lambda line: print(line, file=sys.stderr))
        names = [*stack.names(), "frontend"]
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name)
                raise RuntimeError(
                    f"a container named '{name}' already exists: stop the other stack first "
                    f"(docker rm -f {name})"
                )
        labels = {contract.LABEL: str(stack.frontend)}
        network = client.networks.create(f"chaoskit-stack-{stack.frontend}", labels=labels)
        created: list[Any] = []
        deadline = time.monotonic() + timeout

        def run(name: str, command: list[str], port: int, **extra: Any) -> None:
            container = client.containers.create(
                image,
                command=command,
                name=name,
                labels=labels,
                ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
                restart_policy={"Name": "unless-stopped"},
                **extra,
            )
            created.append(container)
            network.connect(container, aliases=[name])
            container.start()

        try:
            for name, port in zip(stack.names(), stack.backends, strict=True):
                faked: dict[str, Any] = {}
                if stack.faketime is not None:
                    env, volumes, _ = container_faketime(stack.faketime, name)
                    faked = {"environment": env, "volumes": volumes}
                run(
                    name,
                    ["chaoskit.stack.backend", "--name", name, "--host", "0.0.0.0",
                     "--port", str(CONTAINER_PORT), "--data-dir", "/data"],
                    port,
                    tmpfs={"/data": f"size={stack.tmpfs or 64 * 1024 * 1024}"},
                    **faked,
                )  # fmt: skip
            for port in stack.backends:
                _wait_container(f"http://127.0.0.1:{port}/health/ready", deadline, created)
            command = [
                "chaoskit.stack.frontend", "--host", "0.0.0.0", "--port", str(CONTAINER_PORT)
            ]  # fmt: skip
            for name in stack.names():
                command += ["--backend", f"{name}=http://{name}:{CONTAINER_PORT}"]
            run("frontend", command, stack.frontend)
            _wait_container(f"http://127.0.0.1:{stack.frontend}/health/live", deadline, created)
            yield
        finally:
            for container in created:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()


def _wait_container(url: str, deadline: float, containers: list[Any]) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=0.5, trust_env=False).status_code < 500:
                return
        time.sleep(0.1)
    logs = containers[-1].logs(tail=10).decode(errors="replace") if containers else ""
    raise TimeoutError(f"{url} did not answer in time; last container's log:\n{logs}")


def describe(stack: StackPlan) -> str:
    """Where each part listens, for people."""
    rows = [("frontend", f"http://127.0.0.1:{stack.frontend}/items")]
    if stack.mode == "process":
        rows.append(("supervisor", f"http://127.0.0.1:{stack.supervisor}/status"))
    if stack.toxiproxy is not None:
        rows.append(("toxiproxy API", f"http://127.0.0.1:{stack.toxiproxy}"))
    for name, backend, proxy in zip(stack.names(), stack.backends, stack.proxies, strict=True):
        via = f"  (via proxy 127.0.0.1:{proxy})" if stack.toxiproxy is not None else ""
        rows.append((name, f"http://127.0.0.1:{backend}{via}"))
    if stack.mode == "process":
        rows.append(("data", str(stack.data_root)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {where}" for name, where in rows)


def write_ports(stack: StackPlan, path: Path) -> None:
    """Write the stack's ports file (``contract.py``), for the runner's ``${ports.NAME}``."""
    contract.write_ports(path, stack.ports(), stack.data_root)
