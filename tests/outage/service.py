"""A small real HTTP service for the outage matrix: a frontend in front of backends, each
backend behind the proxy chaoskit places in front of it, so the fault is real and the frontend
sees it as a client would. How the frontend behaves while a backend is down and after it comes
back is chosen on the command line, one behaviour per row of the matrix.

    python service.py backend PORT        (each answer takes 10 ms of work)
    python service.py frontend PORT --backend a=PORT --backend b=PORT [options]

Every answer of the frontend names the backend the request was routed to in ``X-Backend``
(round robin), failures included. Options:

- ``--during {error,fallback,partial:SHARE}``: while a backend's calls fail, answer 502, a stale
  200 (the fault is absorbed), or 502 for that share of requests and a stale 200 otherwise.
- ``--after {ok,latch,slow:SECONDS,flap:SECONDS:TIMES}``: once the backend answers again, be
  healthy at once; keep failing for good (a breaker that never closes); keep failing for
  SECONDS (a cold cache refilling); or fail SECONDS, succeed SECONDS, TIMES over, then heal.
- ``--errors SHARE``: answer 500 to that share of each backend's requests, evenly spread,
  whatever happens (at 1.0, broken from the start; at 0.01, a small error rate inside an SLO).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

UPSTREAM_TIMEOUT = 3.0
"""Longer than the matrix's load timeout (1 s): a hanging backend hangs the client too."""


@dataclass
class Backend:
    name: str
    port: int
    failing: bool = False
    came_back: float | None = None
    latched: bool = False
    served: int = 0


class Frontend:
    def __init__(self, backends: list[Backend], during: str, after: str, errors: float) -> None:
        self.backends = backends
        self.during = during
        self.after = after
        self.errors = errors
        self.turn = 0
        self.rng = random.Random(7)
        self.session: ClientSession | None = None

    async def start(self, _app: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(total=UPSTREAM_TIMEOUT)
        )

    async def stop(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def answer(self, backend: Backend, status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text, headers={"X-Backend": backend.name})

    def recovering(self, backend: Backend) -> bool:
        """Whether the scripted behaviour after a come-back still fails this request."""
        if backend.latched:
            return True
        if backend.came_back is None:
            return False
        since = time.monotonic() - backend.came_back
        kind, _, rest = self.after.partition(":")
        if kind == "slow":
            return since < float(rest)
        if kind == "flap":
            seconds, times = rest.split(":")
            stretch = int(since // float(seconds))
            return stretch < 2 * int(times) and stretch % 2 == 0
        return False

    async def handle(self, _request: web.Request) -> web.Response:
        backend = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        backend.served += 1
        if self.errors and backend.served % round(1 / self.errors) == 0:
            return self.answer(backend, 500, "broken")
        if self.recovering(backend):
            return self.answer(backend, 503, "recovering")
        assert self.session is not None
        try:
            async with self.session.get(f"http://127.0.0.1:{backend.port}/") as upstream:
                await upstream.read()
                if upstream.status >= 500:
                    raise ClientError(f"upstream answered {upstream.status}")
        except (ClientError, TimeoutError):
            backend.failing = True
            backend.came_back = None
            if self.after == "latch":
                backend.latched = True
            return self.failed(backend)
        if backend.failing:
            backend.failing = False
            backend.came_back = time.monotonic()
            if self.recovering(backend):
                return self.answer(backend, 503, "recovering")
        return self.answer(backend, 200, "ok")

    def failed(self, backend: Backend) -> web.Response:
        kind, _, share = self.during.partition(":")
        if kind == "fallback" or (kind == "partial" and self.rng.random() >= float(share)):
            return self.answer(backend, 200, "stale")
        return self.answer(backend, 502, "upstream failed")


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


SERVICE_TIME = 0.01
"""A backend's work per request. Without it a request takes about a millisecond, and a busy
test machine's scheduling alone can double a second's median (that reads as not recovered)."""


async def work(_request: web.Request) -> web.Response:
    await asyncio.sleep(SERVICE_TIME)
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["backend", "frontend"])
    parser.add_argument("port", type=int)
    parser.add_argument("--backend", action="append", default=[], help="NAME=PORT")
    parser.add_argument("--during", default="error")
    parser.add_argument("--after", default="ok")
    parser.add_argument("--errors", type=float, default=0.0)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/health", health)
    if args.role == "backend":
        app.router.add_get("/", work)
    else:
        backends = [Backend(n, int(p)) for n, p in (b.split("=") for b in args.backend)]
        frontend = Frontend(backends, args.during, args.after, args.errors)
        app.on_startup.append(frontend.start)
        app.on_cleanup.append(frontend.stop)
        app.router.add_get("/", frontend.handle)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
