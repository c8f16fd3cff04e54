"""Bringing the system under test up before a run and down after it: the reference stack (as a
``chaoskit stack up`` process, never imported), local processes and containers — each with the
targets faults may hit, and everything torn down on every exit path.

A part that cannot even be started — a process whose program or working directory is not there
or not executable, a container whose image is not on the engine or whose command the engine
refuses — is a mistake in the experiment (or the machine it runs on), not a system that failed
to come up: the run is refused (``PreflightError``, exit 2) naming the part, what is wrong and
the field to check, after the parts already started are stopped. A part that starts and then
dies or never gets ready is a :class:`BringUpError` (exit 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..drivers.base import Target
from ..drivers.process import process_target, start_ticks
from ..launch import LaunchError, sandbox
from ..launch.faketime import container_faketime, process_faketime
from ..model import System
from ..model.system import ContainerSpec, ProcessSpec, ReadyCheck, StackSpec
from ..model.variables import render
from .errors import BringUpError, PreflightError

__all__ = ["BringUpError", "RunningSystem", "bring_up", "free_ports", "stop_part"]

_STACK_LABEL = "chaoskit.stack"
_GRACE = 5.0


def _cannot_start(part: str, problem: str, field: str) -> Exception:
    """The refusal for a part that cannot even be started: a ``PreflightError`` (exit 2)."""
    return PreflightError(f"cannot start {part}: {problem}; check {field}")


def _exec_problem(error: OSError) -> str:
    """What exec (or the change into the working directory) said, as 'PATH: reason'."""
    reason = (error.strerror or str(error)).lower()
    return f"{error.filename}: {reason}" if error.filename is not None else reason


def _findable(program: str, cwd: str | None, path: str | None) -> bool:
    """Whether exec would find ``program`` as an executable file: on ``path`` (PATH), or
    relative to ``cwd`` when it names a directory."""
    if os.sep in program:
        program = os.path.join(cwd or "", program)
    return shutil.which(program, path=path if path is not None else os.defpath) is not None


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (bound and released together)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class RunningSystem:
    """What is up: ports by name, and a way to list the targets as they are now."""

    ports: dict[str, int] = field(default_factory=dict)
    toxiproxy_url: str | None = None
    """The Toxiproxy API the stack's proxies live on (process-mode stack)."""
    front_url: str | None = None
    """The API of the proxy server chaoskit started for proxies in front of targets, if any."""
    _sources: list[Callable[[], list[Target]]] = field(default_factory=list)

    def targets(self) -> list[Target]:
        """Every target, resolved now (a restarted process has a new pid); where two sources
        know the same one, the first wins (the run's own parts come before the engine's)."""
        found: dict[tuple[str, str], Target] = {}
        for source in self._sources:
            for target in source():
                found.setdefault((target.kind, target.name), target)
        return list(found.values())

    def add_source(self, source: Callable[[], list[Target]]) -> None:
        """Also offer the targets ``source`` lists (called afresh each time)."""
        self._sources.append(source)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


async def _ready(
    check: ReadyCheck, render_: Callable[[str], str], alive: Callable[[], str | None], what: str
) -> None:
    """Wait until ``check`` passes; fail early if the thing died (``alive`` says why)."""
    deadline = time.monotonic() + check.timeout.seconds
    async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
        while True:
            problem = alive()
            if problem is not None:
                raise BringUpError(f"{what} {problem}")
            if check.http is not None:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(render_(check.http))).is_success:
                        return
            elif check.tcp is not None:
                host, _, port = render_(check.tcp).rpartition(":")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection(host, int(port))
                    writer.close()
                    return
            if time.monotonic() > deadline:
                target = check.http or check.tcp
                raise BringUpError(f"{what} was not ready within {check.timeout} ({target})")
            await asyncio.sleep(0.1)


class _Bringer:
    """Starts the parts in order and remembers how to stop each one."""

    def __init__(
        self,
        system: System,
        run_id: str,
        run_dir: Path,
        on_start: Callable[[dict[str, Any]], None] | None = None,
        on_stop: Callable[[str], None] | None = None,
    ) -> None:
        self.on_start = on_start
        self.on_stop = on_stop
        self.system = system
        self.run = {"id": run_id, "dir": str(run_dir)}
        self.run_id = run_id
        self.run_dir = run_dir
        self.up = RunningSystem()
        self.stops: list[Callable[[], None]] = []

    def track(self, part: dict[str, Any], stop: Callable[[], None]) -> None:
        """Remember how to stop ``part``, and tell the journal (via ``on_start``) it runs."""
        if self.on_start is not None:
            self.on_start(part)

        def stop_and_record() -> None:
            stop()
            if self.on_stop is not None:
                self.on_stop(part["key"])

        self.stops.append(stop_and_record)

    def render(self, text: str) -> str:
        return render(text, self.up.ports, self.run)

    def _log(self, name: str) -> Path:
        path = self.run_dir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- the reference stack ------------------------------------------------------------------

    async def stack(self, spec: StackSpec) -> None:
        ports_file = self.run_dir / "stack-ports.json"
        argv = [
            sys.executable, "-m", "chaoskit", "stack", "up", "--replicas", str(spec.replicas),
            "--mode", spec.mode, "--ports-file", str(ports_file),
            "--data-root", str(self.run_dir / "stack-data"),
        ]  # fmt: skip
        argv += ["--ready-timeout", f"{spec.ready_timeout.seconds}s"]
        if spec.tmpfs is not None:
            argv += ["--tmpfs", str(spec.tmpfs.bytes)]
        faketime = self.run_dir / "faketime" if spec.faketime else None
        if faketime is not None:
            argv += ["--faketime", str(faketime)]
        log = self._log("stack")
        with log.open("ab") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
            )
        self.track(_process_part("stack", process.pid), lambda: _terminate(process, 30.0))
        # `stack up` keeps the ready timeout itself and exits when it passes; this outer bound
        # only catches a stack that hangs before it starts counting (a container image build).
        grace = 300.0 if spec.mode == "container" else 30.0
        deadline = time.monotonic() + spec.ready_timeout.seconds + grace
        while not ports_file.exists():
            if process.poll() is not None:
                raise BringUpError(
                    f"the reference stack exited with {process.returncode}:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise BringUpError(f"the reference stack did not come up in time:\n{_tail(log)}")
            await asyncio.sleep(0.1)
        described = json.loads(ports_file.read_text())
        ports: dict[str, int] = described["ports"]
        self.up.ports.update(ports)
        data_root = Path(described["data_root"])
        names = spec.backend_names()
        if spec.mode == "process":
            api = f"http://127.0.0.1:{ports['toxiproxy']}"
            self.up.toxiproxy_url = api
            supervisor = f"http://127.0.0.1:{ports['supervisor']}/status"

            def backends() -> list[Target]:
                status = httpx.get(supervisor, timeout=2, trust_env=False).json()
                found = []
                for replica in status["replicas"]:
                    if replica["pid"] is None:
                        continue
                    with contextlib.suppress(Exception):
                        found.append(
                            process_target(
                                replica["pid"],
                                replica["name"],
                                {"role": "backend"},
                                tmpfs=str(data_root / replica["name"]) if spec.tmpfs else None,
                                faketime=str(faketime / replica["name"]) if faketime else None,
                            )
                        )
                return found

            def proxies() -> list[Target]:
                listed = httpx.get(f"{api}/proxies", timeout=2, trust_env=False).json()
                return [Target("proxy", name, {}, {"url": api, "proxy": name}) for name in listed]

            self.up._sources += [backends, proxies]
        else:

            def containers() -> list[Target]:
                import docker  # noqa: PLC0415 - only with a container-mode stack

                client = docker.from_env()
                try:
                    listed = client.containers.list(
                        all=True, filters={"label": f"{_STACK_LABEL}={ports['frontend']}"}
                    )
                    found = []
                    for container in listed:
                        ref: dict[str, Any] = {"id": container.id, "tmpfs": "/data"}
                        if faketime is not None and container.name in names:
                            ref["faketime"] = str(faketime / container.name)
                        role = "backend" if container.name in names else "frontend"
                        found.append(Target("container", container.name, {"role": role}, ref))
                    return found
                finally:
                    client.close()

            self.up._sources.append(containers)

    # -- chaoskit's own proxy server, for proxies in front of targets ---------------------------

    async def front_proxy(self) -> None:
        """Start ``chaoskit proxy`` on a free loopback port, as a part the journal records (so
        after a crash the watchdog stops it, once the toxics on it are reverted)."""
        (port,) = free_ports(1)
        argv = [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1",
                "--port", str(port)]  # fmt: skip
        log = self._log("front-proxy")
        with log.open("ab") as output:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
            )
        self.track(_process_part("front-proxy", process.pid), lambda: _terminate(process, _GRACE))
        api = f"http://127.0.0.1:{port}"

        def alive() -> str | None:
            code = process.poll()
            return None if code is None else f"exited with {code}:\n{_tail(log)}"

        check = ReadyCheck.model_validate({"http": f"{api}/version", "timeout": "20s"})
        await _ready(check, self.render, alive, "chaoskit's proxy for targets' ports")
        self.up.front_url = api

    # -- a Toxiproxy server of the user's -------------------------------------------------------

    def toxiproxy(self, url: str) -> None:
        """Offer the proxies of the Toxiproxy API at ``url`` as targets."""
        api = url.rstrip("/")
        self.up.toxiproxy_url = api

        def proxies() -> list[Target]:
            try:
                listed = httpx.get(f"{api}/proxies", timeout=2, trust_env=False).json()
            except httpx.HTTPError as error:
                raise BringUpError(f"no Toxiproxy API answers at {api}: {error}") from None
            return [Target("proxy", name, {}, {"url": api, "proxy": name}) for name in listed]

        self.up._sources.append(proxies)

    # -- local processes ----------------------------------------------------------------------

    async def process(self, spec: ProcessSpec, index: int) -> None:
        """Start ``spec`` (``system.processes[index]``), and wait until it is ready."""
        argv = [self.render(arg) for arg in spec.command]
        env = {**os.environ, **{k: self.render(v) for k, v in spec.env.items()}}
        cwd = self.render(spec.cwd) if spec.cwd else None
        part, field = f"process '{spec.name}'", f"system.processes[{index}]"
        skew = self.run_dir / "faketime" / spec.name if spec.faketime else None
        if skew is not None:
            try:
                env.update(process_faketime(skew))
            except LaunchError as error:
                raise _cannot_start(part, str(error), f"{field}.faketime") from None
        if spec.tmpfs is not None:
            # The sandbox starts first and execs the program only then: look for it now, so a
            # program that is not there is refused as it is without a sandbox.
            if (cwd is None or os.path.isdir(cwd)) and not _findable(argv[0], cwd, env.get("PATH")):
                problem = f"{argv[0]}: no executable file by that name (on PATH, or from its cwd)"
                raise _cannot_start(part, problem, f"{field}.command")
            argv = sandbox.command(argv, spec.tmpfs.path, spec.tmpfs.size)
        log = self._log(spec.name)
        try:
            with log.open("ab") as output:
                process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,
                )
        except OSError as error:
            if error.filename is None:  # neither its program nor its directory: this machine's
                message = f"process {spec.name}: cannot start {argv[0]}: {error}"
                raise BringUpError(message) from None
            if cwd is not None and error.filename == cwd:
                raise _cannot_start(part, f"cwd {_exec_problem(error)}", f"{field}.cwd") from None
            raise _cannot_start(part, _exec_problem(error), f"{field}.command") from None
        except ValueError as error:  # a NUL byte in an argument or a variable
            raise _cannot_start(part, str(error), field) from None
        self.track(_process_part(spec.name, process.pid), lambda: _terminate(process, _GRACE))

        def alive() -> str | None:
            code = process.poll()
            if code is None:
                return None
            return f"exited with {code} before it was ready; its last output:\n{_tail(log)}"

        if spec.ready is not None:
            await _ready(spec.ready, self.render, alive, f"process {spec.name}")
        tmpfs = spec.tmpfs.path if spec.tmpfs else None

        def target() -> list[Target]:
            if process.poll() is not None:
                return []
            return [
                process_target(
                    process.pid, spec.name, dict(spec.labels), tmpfs, str(skew) if skew else None
                )
            ]

        self.up._sources.append(target)

    # -- containers ---------------------------------------------------------------------------

    async def containers(self, specs: list[ContainerSpec]) -> None:
        import docker  # noqa: PLC0415 - the Docker SDK loads only when containers are asked for
        import docker.errors  # noqa: PLC0415

        try:
            client = docker.from_env()
            client.ping()
        except docker.errors.DockerException as error:
            raise BringUpError(f"system.containers needs a Docker engine: {error}") from None
        self.stops.append(client.close)
        wanted = {cport for spec in specs for cport in spec.ports}
        for name, port in zip(sorted(wanted), free_ports(len(wanted)), strict=True):
            self.up.ports[name] = port
        for spec in specs:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(spec.name)
                raise BringUpError(
                    f"a container named '{spec.name}' already exists: remove it "
                    f"(docker rm -f {spec.name}) or rename it in system.containers"
                )
        for index, spec in enumerate(specs):
            await self._container(client, spec, index)

    async def _container(self, client: Any, spec: ContainerSpec, index: int) -> None:
        import docker.errors  # noqa: PLC0415

        part, field = f"container '{spec.name}'", f"system.containers[{index}]"

        def refused(error: Any, what: str) -> Exception:
            """The engine's answer: a request it calls invalid (4xx: no such image, a command
            it cannot exec) is the experiment's mistake; anything else, the engine's."""
            explanation = error.explanation or str(error)
            if error.is_client_error():
                return _cannot_start(part, explanation, what)
            return BringUpError(f"container {spec.name}: {explanation}")

        env = {k: self.render(v) for k, v in spec.env.items()}
        extra: dict[str, Any] = {}
        skew: Path | None = None
        if spec.faketime:
            faked, volumes, skew = container_faketime(self.run_dir / "faketime", spec.name)
            env.update(faked)
            extra["volumes"] = volumes
        if spec.tmpfs is not None:
            extra["tmpfs"] = {spec.tmpfs.path: f"size={spec.tmpfs.size.bytes}"}
        if spec.restart != "no":
            extra["restart_policy"] = {"Name": spec.restart}
        try:
            container = client.containers.create(
                spec.image,
                [self.render(a) for a in spec.command] if spec.command else None,
                name=spec.name,
                environment=env,
                labels={**spec.labels, "chaoskit.run": self.run_id},
                ports={
                    f"{cport}/tcp": ("127.0.0.1", self.up.ports[name])
                    for name, cport in spec.ports.items()
                },
                **extra,
            )
        except docker.errors.ImageNotFound:
            problem = (
                f"no image '{spec.image}' on this engine; build it locally (chaoskit never pulls "
                "from a registry)"
            )
            raise _cannot_start(part, problem, f"{field}.image") from None
        except docker.errors.APIError as error:
            raise refused(error, field) from None

        def remove() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)

        self.track({"key": f"container:{container.id}", "kind": "container", "name": spec.name,
                    "id": container.id}, remove)  # fmt: skip
        try:
            for network_name in spec.networks:
                try:
                    network = client.networks.get(network_name)
                except docker.errors.NotFound:
                    network = client.networks.create(
                        network_name, labels={"chaoskit.run": self.run_id}
                    )
                    entry = {"key": f"network:{network.id}", "kind": "network", "id": network.id}
                    self.track(entry, _network_remover(network))
                network.connect(container, aliases=list(spec.aliases) or None)
        except docker.errors.APIError as error:
            raise refused(error, f"{field}.networks") from None
        try:
            container.start()
        except docker.errors.APIError as error:  # e.g. a command it cannot exec
            raise refused(error, f"{field}.command (and the image's entrypoint)") from None

        def alive() -> str | None:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs(tail=12).decode(errors="replace")
                code = container.attrs["State"].get("ExitCode")
                return f"exited with {code} before it was ready; its last output:\n{logs}"
            return None

        if spec.ready is not None:
            await _ready(spec.ready, self.render, alive, f"container {spec.name}")
        ref: dict[str, Any] = {"id": container.id}
        if skew is not None:
            ref["faketime"] = str(skew)
        if spec.tmpfs is not None:
            ref["tmpfs"] = spec.tmpfs.path
        target = Target("container", spec.name, dict(spec.labels), ref)
        self.up._sources.append(lambda: [target])

    def tear_down(self) -> list[str]:
        """Stop everything started, newest first; return what could not be stopped."""
        problems = []
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception as error:  # keep stopping the rest; report each
                problems.append(str(error))
        return problems


def _network_remover(network: Any) -> Callable[[], None]:
    def remove() -> None:
        import docker.errors  # noqa: PLC0415

        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            network.remove()

    return remove


def _process_part(name: str, pid: int) -> dict[str, Any]:
    return {"key": f"process:{pid}", "kind": "process", "name": name, "pid": pid,
            "start": start_ticks(pid)}  # fmt: skip


def stop_part(part: dict[str, Any]) -> str | None:
    """Stop a part a crashed run left running (from its journal entry); None, or why not."""
    kind = part["kind"]
    if kind == "process":
        pid = int(part["pid"])
        if start_ticks(pid) != part.get("start"):
            return None  # gone already (or the pid now belongs to someone else)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + _GRACE
        while start_ticks(pid) == part.get("start") and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if start_ticks(pid) == part.get("start"):
                os.killpg(pid, signal.SIGKILL)
        return None
    import docker  # noqa: PLC0415 - only for containers and networks
    import docker.errors  # noqa: PLC0415

    try:
        client = docker.from_env()
    except docker.errors.DockerException as error:
        return f"no Docker engine to remove {kind} {part.get('name') or part['id']}: {error}"
    try:
        if kind == "container":
            client.containers.get(part["id"]).remove(force=True)
        else:
            client.networks.get(part["id"]).remove()
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as error:
        return str(error.explanation or error)
    finally:
        client.close()
    return None


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process's group, then SIGKILL it if it has not gone within ``grace``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.asynccontextmanager
async def bring_up(
    system: System,
    run_id: str,
    run_dir: Path,
    *,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_stop: Callable[[str], None] | None = None,
    front_proxy: bool = False,
) -> AsyncIterator[RunningSystem]:
    """Start the stack, then free ports, processes and containers; stop them all on exit.

    ``on_start``/``on_stop`` hear of each part started and stopped (the runner journals them).
    With ``front_proxy``, a ``chaoskit proxy`` for proxies in front of targets starts first.
    """
    bringer = _Bringer(system, run_id, run_dir, on_start, on_stop)
    try:
        if front_proxy:
            await bringer.front_proxy()
        if system.stack is not None:
            await bringer.stack(system.stack)
        own = [name for name in system.ports if name not in bringer.up.ports]
        bringer.up.ports.update(zip(own, free_ports(len(own)), strict=True))
        url = system.toxiproxy or (None if system.stack else os.environ.get("TOXIPROXY_URL"))
        if url:
            bringer.toxiproxy(bringer.render(url))
        if system.containers:
            await bringer.containers(system.containers)
        for index, spec in enumerate(system.processes):
            await bringer.process(spec, index)
        yield bringer.up
    finally:
        await asyncio.get_running_loop().run_in_executor(None, bringer.tear_down)
