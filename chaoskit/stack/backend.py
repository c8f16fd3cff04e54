"""The backend service: stores items in a data folder and issues time-limited tokens.

Chosen so that faults show: a full disk makes writes answer 507 while reads go on, and a
skewed wall clock makes tokens look expired (or not yet valid) to the other replicas.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["BackendConfig", "create_app", "main"]

DEFAULT_SECRET = "chaoskit-demo-secret"
"""Shared by the demo's replicas so tokens from one are accepted by the others."""
LEEWAY_SECONDS = 5.0
"""Clock difference tolerated between replicas before a token counts as not yet valid."""


class BackendConfig:
    """Where a backend keeps its data and how it signs tokens."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        secret: str = DEFAULT_SECRET,
        token_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.data_dir = data_dir
        self.secret = secret.encode()
        self.token_ttl = token_ttl
        self.clock = clock  # the wall clock on purpose: that is what clock skew changes


class _Metrics:
    def __init__(self, name: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "backend_requests", "Requests served.", ["route", "status"], registry=self.registry
        )
        self.write_failures = Counter(
            "backend_write_failures", "Writes refused for lack of space.", registry=self.registry
        )
        self.token_rejections = Counter(
            "backend_token_rejections", "Tokens refused.", ["reason"], registry=self.registry
        )
        self.items = Gauge("backend_items", "Items stored.", registry=self.registry)
        self.info = Gauge(
            "backend_info", "Which replica this is.", ["name"], registry=self.registry
        )
        self.info.labels(name=name).set(1)


NAME = web.AppKey("name", str)
CONFIG = web.AppKey("config", BackendConfig)
METRICS = web.AppKey("metrics", _Metrics)


def _sign(config: BackendConfig, payload: bytes) -> str:
    return hmac.new(config.secret, payload, hashlib.sha256).hexdigest()


def issue_token(config: BackendConfig) -> tuple[str, float]:
    """A token valid for ``token_ttl`` seconds of this replica's wall clock."""
    now = config.clock()
    expires = now + config.token_ttl
    payload = json.dumps({"iat": now, "exp": expires, "by": config.name}).encode()
    body = base64.urlsafe_b64encode(payload).decode()
    return f"{body}.{_sign(config, payload)}", expires


def check_token(config: BackendConfig, token: str) -> str | None:
    """None if ``token`` is valid by this replica's clock, else why not."""
    body, _, signature = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body.encode())
        claims = json.loads(payload)
        issued, expires = float(claims["iat"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return "malformed"
    if not hmac.compare_digest(signature, _sign(config, payload)):
        return "bad_signature"
    now = config.clock()
    if now >= expires:
        return "expired"
    if issued > now + LEEWAY_SECONDS:
        return "not_yet_valid"
    return None


@web.middleware
async def _tag(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Name the replica on every answer (for control/experiment tagging) and count it."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers["X-Backend"] = request.app[NAME]
    route = (
        request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    )
    request.app[METRICS].requests.labels(route=route, status=str(response.status)).inc()
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _authorised(request: web.Request) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None  # tokens are optional; the frontend always sends one
    reason = check_token(request.app[CONFIG], header.removeprefix("Bearer ").strip())
    if reason is None:
        return None
    request.app[METRICS].token_rejections.labels(reason=reason).inc()
    return web.json_response({"error": f"token {reason}"}, status=401)


def _items(config: BackendConfig) -> list[dict[str, object]]:
    found = []
    for path in sorted(config.data_dir.glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a half-written file from a full disk is skipped, not served
    return found


async def _list(request: web.Request) -> web.Response:
    if (refusal := _authorised(request)) is not None:
        return refusal
    items = _items(request.app[CONFIG])
    request.app[METRICS].items.set(len(items))
    return web.json_response({"items": items, "backend": request.app[NAME]})


async def _get(request: web.Request) -> web.Response:
    if (refusal := _authorised(request)) is not None:
        return refusal
    item_id = request.match_info["item_id"]
    path = request.app[CONFIG].data_dir / f"{item_id}.json"
    if not item_id.replace("-", "").isalnum() or not path.is_file():
        return web.json_response({"error": "no such item"}, status=404)
    return web.json_response(json.loads(path.read_text()))


async def _create(request: web.Request) -> web.Response:
    if (refusal := _authorised(request)) is not None:
        return refusal
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    config = request.app[CONFIG]
    item = {"id": uuid.uuid4().hex, "name": str(body.get("name", "")), "at": config.clock()}
    path = config.data_dir / f"{item['id']}.json"
    try:
        with path.open("w") as handle:
            handle.write(json.dumps(item))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            request.app[METRICS].write_failures.inc()
            return web.json_response({"error": "insufficient storage"}, status=507)
        raise
    return web.json_response(item, status=201)


async def _token(request: web.Request) -> web.Response:
    token, expires = issue_token(request.app[CONFIG])
    return web.json_response({"token": token, "expires_at": expires})


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"status": "live"})


async def _ready(request: web.Request) -> web.Response:
    ready = os.access(request.app[CONFIG].data_dir, os.R_OK)
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(config: BackendConfig) -> web.Application:
    """The backend's HTTP application."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = web.Application(middlewares=[_tag])
    app[NAME] = config.name
    app[CONFIG] = config
    app[METRICS] = _Metrics(config.name)
    app.router.add_get("/items", _list)
    app.router.add_post("/items", _create)
    app.router.add_get("/items/{item_id}", _get)
    app.router.add_post("/token", _token)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m chaoskit.stack.backend --name backend-1 --port 8081 --data-dir DIR``."""
    parser = argparse.ArgumentParser(prog="chaoskit.stack.backend", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--token-ttl", type=float, default=60.0)
    parser.add_argument("--secret", default=os.environ.get("CHAOSKIT_STACK_SECRET", DEFAULT_SECRET))
    args = parser.parse_args(argv)
    config = BackendConfig(args.name, args.data_dir, args.secret, args.token_ttl)
    web.run_app(create_app(config), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
