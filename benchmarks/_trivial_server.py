"""A trivial HTTP/1.1 server for benchmarks: every request gets the same keep-alive answer.

Each worker process is a raw asyncio Protocol that counts request heads (GET/HEAD without a
body, pipelined or not) and writes a fixed response for each; several workers share one port
through SO_REUSEPORT, so the kernel spreads connections across them. One worker answers wrk
at about 47,000 requests/s on loopback here, on half a core; on a 2-core machine the server
shares the cores with whatever measures it, so say so beside any figure taken with it.

Use from a benchmark::

    from _trivial_server import TrivialServer
    with TrivialServer(workers=2) as server:
        ... server.url("/") ...

or on its own: ``python benchmarks/_trivial_server.py [--workers N] [--port P]`` (it prints
the port, then serves until interrupted). The leading underscore keeps ``nox -s bench`` from
running it as a benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)
HERE = Path(__file__).resolve()


class _Answering(asyncio.Protocol):
    """Answers each request head with :data:`ANSWER` (requests carry no body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :] if heads else data
        if heads and self.transport is not None:
            self.transport.write(ANSWER * heads)


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


async def _serve(port: int) -> None:
    sock = _listener(port)
    sock.listen(4096)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answering, sock=sock, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(sock.getsockname()[1], flush=True)
    async with server:
        await stop.wait()


class TrivialServer:
    """``workers`` server processes on one 127.0.0.1 port (SO_REUSEPORT), for a ``with``."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.port = 0
        self.processes: list[subprocess.Popen[str]] = []
        self._holder: socket.socket | None = None

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def cpu_seconds(self) -> float:
        """User + system CPU the server processes have used so far (from /proc)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def __enter__(self) -> TrivialServer:
        self._holder = _listener(0)  # keeps the port ours until every worker listens on it
        self.port = self._holder.getsockname()[1]
        try:
            for _ in range(self.workers):
                process = subprocess.Popen(
                    [sys.executable, str(HERE), "--port", str(self.port)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                self.processes.append(process)
            for process in self.processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != str(self.port):
                    raise RuntimeError("a trivial server worker did not start")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._holder is not None:
            self._holder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port (one worker only)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.workers == 1 or args.port:
        asyncio.run(_serve(args.port))
        return
    with TrivialServer(args.workers) as server:
        print(server.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
