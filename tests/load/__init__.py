"""Real servers on loopback for the load and probe tests: an aiohttp application or a raw TCP
handler, each served from its own thread and event loop."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType

from aiohttp import web

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ThreadServer:
    """Serves ``app`` (or the raw TCP ``handler``) on 127.0.0.1, on a free port, in a thread;
    over TLS with the ``tls`` context if one is given."""

    def __init__(
        self,
        app: web.Application | None = None,
        *,
        handler: RawHandler | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if (app is None) == (handler is None):
            raise ValueError("give an app or a raw handler")
        self.app = app
        self.handler = handler
        self.tls = tls
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the test server did not start within 10s")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.loop is not None and self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the test server did not stop within 10s"

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test by __enter__
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.app is not None:
            runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024, ssl_context=self.tls)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()
        else:
            assert self.handler is not None
            server = await asyncio.start_server(
                self.handler, "127.0.0.1", 0, backlog=1024, ssl=self.tls
            )
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                server.close()
                await server.wait_closed()
