"""The Toxiproxy 2.12 HTTP API over a :class:`ProxyCollection`, byte for byte (aiohttp)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import posixpath
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

import yaml
from aiohttp import web

from ._collection import PopulateError, ProxyCollection
from ._errors import ApiError
from ._json import DecodeError, encode, parse_body
from ._metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = ["MAX_BODY", "MAX_HEAD", "VERSION", "build_app", "openapi"]

log = logging.getLogger("chaoskit.proxy")

VERSION = "2.12.0"
"""The Toxiproxy version whose API this server speaks."""
_HANDLER_TIMEOUT = 25.0
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_MAX_LEASE_MS = 24 * 3600 * 1000
MAX_BODY = 16 * 1024**2
"""The largest request body, in bytes (after any Content-Encoding is undone); larger is 413.
Toxiproxy has no limit; a body is read whole, so this bounds the memory one request takes.
16 MiB is a ``/populate`` of about 100,000 proxies."""
MAX_HEAD = 1024**2
"""The longest request line, in bytes: Go's limit for a whole request head, so any name
Toxiproxy can address (a 100,000-character one, say) can be addressed here too. Header fields
keep aiohttp's 8190 bytes each: at 1 MiB, one request's 128 headers could hold 128 MiB."""
_PARSE_IN_THREAD = 256 * 1024
"""Bodies larger than this are decoded in a worker thread, not on the loop that moves the
proxies' bytes (16 MiB takes over a second)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@functools.cache
def _openapi_yaml() -> bytes:
    return resources.files(__package__).joinpath("openapi.yaml").read_bytes()


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3 description (``openapi.yaml``, shipped in this package)."""
    described: dict[str, Any] = yaml.safe_load(_openapi_yaml())
    return described


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(value).encode(), headers={"Content-Type": _JSON})


def _text_error(status: int, text: str) -> web.Response:
    return web.Response(
        status=status,
        body=text.encode(),
        headers={"Content-Type": _TEXT, "X-Content-Type-Options": "nosniff"},
    )


def _api_error(error: ApiError) -> web.Response:
    body = encode({"error": error.message, "status": error.status}) + "\n"
    return _text_error(error.status, body)


def _empty(status: int) -> web.Response:
    return web.Response(status=status)


def _clean_path(path: bytes) -> bytes:
    """A decoded ``path`` as Toxiproxy's router cleans it: one leading slash, no empty, ``.``
    or ``..`` segments, a trailing slash kept (Go's ``path.Clean``, as gorilla/mux uses it)."""
    cleaned = posixpath.normpath(b"/" + path.lstrip(b"/"))
    if path.endswith(b"/") and cleaned != b"/":
        cleaned += b"/"
    return cleaned


def _redirect(request: web.Request) -> web.Response | None:
    """Go's 301 for a path that is not clean, else None. Decided on the path's bytes, as Go
    decodes it; the Location is percent-encoded again as Go's ``URL.String`` does, with the
    query as it came."""
    raw, asked, query = request.raw_path.partition("?")
    if not raw.startswith("/"):
        return None  # `OPTIONS *` and the like
    path = unquote_to_bytes(raw)
    cleaned = _clean_path(path)
    if cleaned == path:
        return None
    location = quote_from_bytes(cleaned, safe="/$&+,:;=@") + asked + query
    return web.Response(status=301, headers={"Location": location})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Toxiproxy's router, then its middleware: a path that is not clean is redirected (301),
    an unrouted request is Go's 404 or 405; on a route, browsers are refused (403) and API
    errors and the handler timeout answered, each with a request id."""
    redirect = _redirect(request)
    if redirect is not None:
        return redirect
    if request.match_info.http_exception is not None:
        try:
            return await handler(request)  # raises the 404 or 405 below
        except web.HTTPMethodNotAllowed:
            return _empty(405)
        except web.HTTPNotFound:
            return _text_error(404, "404 page not found\n")
    response = await _answer(request, handler)
    response.headers["X-Toxiproxy-Request-Id"] = secrets.token_hex(10)
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A routed request's answer: the handler's, or the error it ended in."""
    if request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return _text_error(403, "User agent not allowed\n")
    try:
        async with asyncio.timeout(_HANDLER_TIMEOUT):
            response = await handler(request)
    except ApiError as error:
        response = _api_error(error)
    except TimeoutError:
        response = _text_error(
            503, "<html><head><title>Timeout</title></head><body><h1>Timeout</h1></body></html>"
        )
    except web.HTTPException:
        raise
    except Exception as error:  # a bug: say so in the API's own error format, and log it
        log.exception("%s %s failed", request.method, request.path)
        response = _api_error(ApiError(500, f"internal error: {type(error).__name__}: {error}"))
    return response


def _too_large() -> ApiError:
    return ApiError(413, f"request body too large: at most {MAX_BODY} bytes")


async def _read(request: web.Request) -> bytes:
    """The whole body; 413 if it is too large, 400 if it cannot be read (bad gzip, say)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    except web.RequestPayloadError as error:
        raise ApiError.bad_body(str(error).replace("\n", " ")) from None


async def _body(request: web.Request) -> Any:
    body = await _read(request)
    try:
        if len(body) > _PARSE_IN_THREAD:
            return await asyncio.to_thread(parse_body, body)
        return parse_body(body)
    except DecodeError as error:
        raise ApiError.bad_body(str(error)) from None


def build_app(collection: ProxyCollection, metrics: Metrics | None = None) -> web.Application:
    """The application serving ``collection``; ``/metrics`` only when ``metrics`` is given."""

    async def version(_request: web.Request) -> web.Response:
        return web.Response(
            body=f'{{"version": "{VERSION}"}}\n'.encode(),
            headers={"Content-Type": "application/json;charset=utf-8"},
        )

    async def list_proxies(_request: web.Request) -> web.Response:
        return _json({proxy.name: proxy.to_json() for proxy in collection})

    async def create_proxy(request: web.Request) -> web.Response:
        return _json(collection.create(await _body(request)).to_json(), 201)

    async def get_proxy(request: web.Request) -> web.Response:
        return _json(collection.get(request.match_info["proxy"]).to_json())

    async def update_proxy(request: web.Request) -> web.Response:
        name = request.match_info["proxy"]
        collection.get(name)
        return _json(collection.update(name, await _body(request)).to_json())

    async def delete_proxy(request: web.Request) -> web.Response:
        collection.delete(request.match_info["proxy"])
        return _empty(204)

    async def list_toxics(request: web.Request) -> web.Response:
        proxy = collection.get(request.match_info["proxy"])
        return _json([toxic.to_json() for toxic in proxy.toxics()])

    async def add_toxic(request: web.Request) -> web.Response:
        name = request.match_info["proxy"]
        collection.get(name)
        return _json(collection.add_toxic(name, await _body(request)).to_json())

    async def get_toxic(request: web.Request) -> web.Response:
        spec = collection.toxic(request.match_info["proxy"], request.match_info["toxic"])
        return _json(spec.to_json())

    async def update_toxic(request: web.Request) -> web.Response:
        name, toxic = request.match_info["proxy"], request.match_info["toxic"]
        collection.toxic(name, toxic)
        return _json(collection.update_toxic(name, toxic, await _body(request)).to_json())

    async def remove_toxic(request: web.Request) -> web.Response:
        collection.remove_toxic(request.match_info["proxy"], request.match_info["toxic"])
        return _empty(204)

    async def populate(request: web.Request) -> web.Response:
        try:
            body = parse_body(await _read(request))
            proxies = collection.populate(body)
        except DecodeError as error:
            failure: ApiError = ApiError.bad_body(str(error))
            created: list[Any] = []
        except PopulateError as error:
            failure, created = error, error.created
        except ApiError as error:
            failure, created = error, []
        else:
            return _json({"proxies": [p.to_json() for p in proxies] or None}, 201)
        shown = [proxy.to_json() for proxy in created] or None
        return _json(
            {"error": failure.message, "status": failure.status, "proxies": shown}, failure.status
        )

    async def reset(_request: web.Request) -> web.Response:
        collection.reset()
        return _empty(204)

    async def lease(request: web.Request) -> web.Response:
        name = request.match_info["proxy"]
        collection.get(name)
        body = await _body(request)
        ttl = body.get("ttl_ms") if isinstance(body, dict) else None
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= _MAX_LEASE_MS:
            raise ApiError(
                400,
                f"a lease needs ttl_ms, a whole number of milliseconds from 1 to {_MAX_LEASE_MS}; "
                "renew it before it runs out or the proxy's toxics are removed",
            )
        collection.lease(name, ttl / 1000)
        return await show_lease(request)

    async def show_lease(request: web.Request) -> web.Response:
        name = request.match_info["proxy"]
        held = collection.leased(name)
        if held is None:
            raise ApiError(404, "lease not found")
        remaining = max(held.expires_at - asyncio.get_running_loop().time(), 0.0)
        return _json(
            {
                "proxy": name,
                "ttl_ms": round(held.ttl * 1000),
                "expires_in_ms": round(remaining * 1000),
            }
        )

    async def release(request: web.Request) -> web.Response:
        if not collection.release(request.match_info["proxy"]):
            raise ApiError(404, "lease not found")
        return _empty(204)

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(openapi()).encode(), content_type=_JSON)

    async def openapi_yaml(_request: web.Request) -> web.Response:
        return web.Response(body=_openapi_yaml(), content_type="application/yaml")

    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_get("/openapi.yaml", openapi_yaml, allow_head=False)
    app.router.add_get("/version", version, allow_head=False)
    app.router.add_get("/proxies", list_proxies, allow_head=False)
    app.router.add_post("/proxies", create_proxy)
    app.router.add_post("/populate", populate)
    app.router.add_post("/reset", reset)
    proxy = "/proxies/{proxy:[^/]+}"  # aiohttp's default refuses { and } in a name
    app.router.add_get(proxy, get_proxy, allow_head=False)
    app.router.add_post(proxy, update_proxy)
    app.router.add_patch(proxy, update_proxy)
    app.router.add_delete(proxy, delete_proxy)
    app.router.add_get(f"{proxy}/toxics", list_toxics, allow_head=False)
    app.router.add_post(f"{proxy}/toxics", add_toxic)
    toxic = f"{proxy}/toxics/{{toxic:[^/]+}}"
    app.router.add_get(toxic, get_toxic, allow_head=False)
    app.router.add_post(toxic, update_toxic)
    app.router.add_patch(toxic, update_toxic)
    app.router.add_delete(toxic, remove_toxic)
    app.router.add_post(f"{proxy}/lease", lease)
    app.router.add_get(f"{proxy}/lease", show_lease, allow_head=False)
    app.router.add_delete(f"{proxy}/lease", release)
    if metrics is not None:

        async def render(_request: web.Request) -> web.Response:
            return web.Response(
                body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app.router.add_route("*", "/metrics", render)
    return app
