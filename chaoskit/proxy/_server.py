"""The embedded server: the API on a loopback port by default, the proxies, a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import resource
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ._api import MAX_HEAD, build_app
from ._collection import ProxyCollection
from ._errors import ApiError
from ._json import DecodeError, parse_body
from ._metrics import Metrics

__all__ = ["ProxyServer", "is_loopback", "run_in_thread"]

log = logging.getLogger("chaoskit.proxy")
http_log = logging.getLogger("chaoskit.proxy.http")
"""aiohttp's server messages: malformed HTTP from a client is one line, not a traceback."""


def _client_fault(record: logging.LogRecord) -> bool:
    """Turn a traceback for a request aiohttp refused (bad request line, bad gzip) into a line."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError | web.RequestPayloadError):
        record.msg = f"{record.getMessage()}: {' '.join(str(error).split())}"
        record.args, record.exc_info, record.exc_text = None, None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
    return True


http_log.addFilter(_client_fault)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _raise_file_limit() -> None:
    """Each proxied connection holds up to six descriptors: allow as many as the system lets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class ProxyServer:
    """A Toxiproxy-compatible server in the running event loop.

    ``seed`` makes toxicity rolls, jitter and slicer cuts reproducible for a given sequence of
    connections. ``config`` is a populate-style JSON file loaded before the API listens.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8474,
        *,
        seed: int | None = None,
        config: Path | None = None,
        proxy_metrics: bool = False,
        runtime_metrics: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.config = config
        self.metrics = (
            Metrics(proxy=proxy_metrics, runtime=runtime_metrics)
            if proxy_metrics or runtime_metrics
            else None
        )
        self.collection = ProxyCollection(
            random.Random(seed), self.metrics.link_ended if self.metrics else None
        )
        self.collection.on_change = lambda message: log.info("%s", message)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The API's base URL (the real port once started on port 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Load the config file, then listen for API requests."""
        _raise_file_limit()
        if self.config is not None:
            self._load_config(self.config)
        runner = web.AppRunner(
            build_app(self.collection, self.metrics),
            access_log=None,
            logger=http_log,
            max_line_size=MAX_HEAD,  # header fields keep aiohttp's 8190 bytes each
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            self.collection.stop_all()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes no public way to learn a port-0 address
        sockets = getattr(server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]

    def _load_config(self, path: Path) -> None:
        """Like ``toxiproxy-server -config``: a bad file is logged and the server starts anyway."""
        try:
            proxies = self.collection.populate(parse_body(path.read_bytes()))
        except (OSError, DecodeError, ApiError) as error:
            log.error("Failed to populate proxies from file %s: %s", path, error)
            return
        log.info("loaded %d proxies from %s", len(proxies), path)

    async def stop(self) -> None:
        """Stop the API and every proxy, closing their connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.collection.stop_all()

    async def serve(self, ready: Any = None) -> None:
        """Run until SIGINT or SIGTERM, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        try:
            if ready is not None:
                ready(self)
            await stopping.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()


@contextlib.contextmanager
def run_in_thread(
    host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None
) -> Iterator[ProxyServer]:
    """A server on its own event loop in a background thread, for tests and fixtures."""
    server = ProxyServer(host, port, seed=seed)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        stops.append(stop)
        try:
            await server.start()
        except BaseException as error:
            failure.append(error)
            return
        finally:
            started.set()
        await stop.wait()
        await server.stop()

    stops: list[asyncio.Event] = []
    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        loop.close()
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stops[0].set)
        thread.join()
        loop.close()
