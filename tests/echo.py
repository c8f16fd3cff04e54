"""A threaded TCP echo server for tests: every chunk it receives goes back, and is reported."""

from __future__ import annotations

import queue
import socket
import threading


class Echo:
    """Echoes every byte on loopback; ``received`` holds each chunk as it arrived."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(sock,), daemon=True).start()

    def _echo(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with sock:
            try:
                while data := sock.recv(65536):
                    self.received.put(data)
                    sock.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
