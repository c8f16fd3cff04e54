"""Hosts on one machine for tests: network namespaces, each reached from this one over a veth
pair of its own (``10.232.K.1`` here, ``10.232.K.2`` there), running its own processes. Every
address is one the tests created; nothing leaves the machine.

Use::

    with NetnsHosts(3) as hosts:
        hosts[0].address            # '10.232.1.2'
        hosts[0].spawn([...])       # a process inside host 1, stopped with the hosts
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import pytest


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@dataclass
class Host:
    """One namespace: its name, its address, and the processes started in it."""

    name: str
    address: str
    gateway: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        """Start ``argv`` inside this host (its stdout piped, for the caller to read)."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def serve_proxies(self, proxies: list[dict[str, Any]]) -> str:
        """Start ``chaoskit proxy`` on this host's address (port 8474) holding ``proxies`` (a
        Toxiproxy ``/populate`` body): its API URL."""
        argv = [sys.executable, "-m", "chaoskit", "proxy", "--host", self.address,
                "--port", "8474"]  # fmt: skip
        server = self.spawn(argv)
        assert server.stdout is not None
        said = re.search(r"http://[\d.]+:\d+", server.stdout.readline())
        assert said is not None, f"chaoskit proxy on {self.name} did not say where it listens"
        populated = httpx.post(f"{said.group(0)}/populate", json=proxies, trust_env=False)
        populated.raise_for_status()
        return said.group(0)


def need_root() -> None:
    """Network namespaces need root: skip without it, unless CI=true, where that fails."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and network namespaces need root")
        pytest.skip("network namespaces need root")


class NetnsHosts:
    """``count`` namespaces, made for the block and removed after it with all they ran."""

    def __init__(self, count: int) -> None:
        tag = os.getpid() % 10000
        self.hosts = [
            Host(f"ck{tag}h{k}", f"10.232.{k}.2", f"10.232.{k}.1") for k in range(1, count + 1)
        ]

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __enter__(self) -> NetnsHosts:
        try:
            for host in self.hosts:
                outside, inside = f"{host.name}o", f"{host.name}i"
                _ip("netns", "add", host.name)
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                _ip("link", "set", inside, "netns", host.name)
                _ip("addr", "add", f"{host.gateway}/30", "dev", outside)
                _ip("link", "set", outside, "up")
                _ip("-n", host.name, "addr", "add", f"{host.address}/30", "dev", inside)
                _ip("-n", host.name, "link", "set", inside, "up")
                _ip("-n", host.name, "link", "set", "lo", "up")
                _ip("-n", host.name, "route", "add", "default", "via", host.gateway)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._remove()

    def _remove(self) -> None:
        for host in self.hosts:
            for process in host.processes:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
                if process.stdout is not None:
                    process.stdout.close()
            subprocess.run(["ip", "link", "del", f"{host.name}o"], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
