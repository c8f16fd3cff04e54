"""A trivial HTTP/1.1 server for benchmarks: every request gets the same small keep-alive answer.

Several copies may listen on one port (SO_REUSEPORT), so a system under test can use both
cores. Written on asyncio's protocol layer because a web framework spends more per request than
the load generator being measured.

Run:  python benchmarks/trivial_server.py PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Answering(asyncio.Protocol):
    """Answers each request head (up to its blank line) with ``ANSWER``; bodies are not read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.pending += data
        heads = self.pending.count(b"\r\n\r\n")
        if heads and self.transport is not None:
            self.transport.write(ANSWER * heads)
            self.pending = self.pending[self.pending.rfind(b"\r\n\r\n") + 4 :]


async def serve(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("127.0.0.1", port))
    server = await asyncio.get_running_loop().create_server(Answering, sock=listener, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
