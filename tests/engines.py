"""A second, real Docker engine for tests: its own ``dockerd`` with its own data root, sockets
and bridge, listening on a unix socket and on loopback TCP with mutual TLS (certificates from a
throwaway CA). Images come from the first engine by ``docker save`` / ``docker load``; nothing
is pulled.

Its bridge is its own (``--bridge``), made here and removed after: a second daemon started
with ``--bridge=none`` deletes the first one's ``docker0`` on start-up.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import trustme

from chaoskit.stack.launcher import free_ports


@dataclass(frozen=True)
class Tls:
    """The files a client needs to reach the engine over TCP."""

    ca: str
    cert: str
    key: str


class SecondEngine:
    """``dockerd`` number two, for the block: :attr:`unix` and :attr:`tcp` (with :attr:`tls`)
    reach it; :meth:`client` is a Docker SDK client on its unix socket."""

    def __init__(self, *, live_restore: bool = True, netns: str | None = None) -> None:
        """``live_restore``: containers outlive a stopped daemon (swarm mode refuses it).
        ``netns``: run the daemon inside that network namespace (a host of tests/hosts.py),
        with its own firewall rules there, so that it publishes ports on that host."""
        self.live_restore = live_restore
        self.netns = netns
        self.folder = Path(tempfile.mkdtemp(prefix="ck-engine-", dir="/tmp"))
        self.unix = f"unix://{self.folder}/docker.sock"
        (port,) = free_ports(1)
        self.tcp = f"tcp://127.0.0.1:{port}"
        self.bridge = f"ckbr{os.getpid() % 100000}"
        self.subnet = f"10.231.{os.getpid() % 250}"
        self.tls: Tls | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SecondEngine:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A client on the unix socket, for the block."""
        client = docker.DockerClient(base_url=self.unix, timeout=60)
        try:
            yield client
        finally:
            client.close()

    def load(self, first: Any, image: str) -> None:
        """Copy ``image`` from the ``first`` engine's client to this one."""
        saved = self.folder / "image.tar"
        with saved.open("wb") as out:
            for chunk in first.images.get(image).save(named=True):
                out.write(chunk)
        with self.client() as second, saved.open("rb") as tar:
            second.images.load(tar.read())
        saved.unlink()

    def stop_daemon(self) -> None:
        """Stop the daemon (containers keep their state for the next :meth:`start_daemon`)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(60)

    def start_daemon(self) -> None:
        """Start the daemon again after :meth:`stop_daemon`, and wait until it answers."""
        argv = [
            "dockerd", "--config-file", str(self.folder / "daemon.json"),
            "--data-root", str(self.folder / "data"), "--exec-root", str(self.folder / "exec"),
            "--pidfile", str(self.folder / "docker.pid"), "-H", self.unix, "-H", self.tcp,
            "--tlsverify", "--tlscacert", str(self.folder / "ca.pem"),
            "--tlscert", str(self.folder / "server.pem"),
            "--tlskey", str(self.folder / "server.key"),
            "--bridge", self.bridge, f"--iptables={self.netns is not None}".lower(),
            "--ip6tables=false",
            "--storage-driver", "vfs", "--containerd-namespace", f"ck{self.bridge}",
            "--containerd-plugins-namespace", f"ck{self.bridge}p",
        ]  # fmt: skip
        if self.live_restore:
            argv.append("--live-restore")
        if self.netns is not None:  # not `ip netns exec`: its own /sys hides the cgroups
            argv = ["nsenter", f"--net=/var/run/netns/{self.netns}", *argv]
        log = (self.folder / "dockerd.log").open("ab")
        self._process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self._process.poll() is not None:
                said = (self.folder / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the second dockerd exited: {said}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the second dockerd did not answer within 60 s")
            time.sleep(0.1)  # polling a daemon's socket: it offers nothing to await

    def _answers(self) -> bool:
        """Does the daemon answer ``/_ping`` on its socket? (Asked by hand: the Docker SDK and
        httpx each leak the socket of a connection that fails.)"""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            try:
                sock.connect(self.unix.removeprefix("unix://"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
                answer = b""
                while chunk := sock.recv(4096):
                    answer += chunk
            except OSError:
                return False
        return answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"OK")

    def _start(self) -> None:
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd is not installed")
        authority = trustme.CA()
        server = authority.issue_cert("127.0.0.1", "localhost")
        client = authority.issue_cert("chaoskit-test-client")
        authority.cert_pem.write_to_path(str(self.folder / "ca.pem"))
        server.cert_chain_pems[0].write_to_path(str(self.folder / "server.pem"))
        server.private_key_pem.write_to_path(str(self.folder / "server.key"))
        client.cert_chain_pems[0].write_to_path(str(self.folder / "client.pem"))
        client.private_key_pem.write_to_path(str(self.folder / "client.key"))
        self.tls = Tls(*(str(self.folder / n) for n in ("ca.pem", "client.pem", "client.key")))
        (self.folder / "daemon.json").write_text("{}")  # not the first engine's settings
        ip = ["ip"] if self.netns is None else ["ip", "-n", self.netns]
        subprocess.run([*ip, "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run([*ip, "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge],
                       check=True)  # fmt: skip
        subprocess.run([*ip, "link", "set", self.bridge, "up"], check=True)
        self.start_daemon()

    def _stop(self) -> None:
        with contextlib.suppress(Exception), self.client() as client:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        with contextlib.suppress(Exception):
            self.stop_daemon()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        ip = ["ip"] if self.netns is None else ["ip", "-n", self.netns]
        subprocess.run([*ip, "link", "del", self.bridge], check=False, capture_output=True)
        # dockerd bind-mounts its data root onto itself and leaves the mount behind
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for point in sorted((m for m in mounted if m.startswith(f"{self.folder}/")), reverse=True):
            subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
        shutil.rmtree(self.folder)
