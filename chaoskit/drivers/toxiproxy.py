"""Network faults through any Toxiproxy API server (Toxiproxy 2.x or ``chaoskit proxy``).

:class:`ToxiproxyClient` speaks the HTTP API; :class:`ToxiproxyDriver` turns network faults into
toxics (``partition`` mode ``hang`` is a ``timeout`` toxic of 0, mode ``refuse`` disables the
proxy). A record holds the server's URL and the exact toxic names it adds, so a revert in a
fresh process removes exactly those. Values the API cannot take exactly (a latency of 250us, a
rate that is not a whole number of kB/s) are refused when planned, never rounded.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from .. import __version__
from ..model import Fault
from ..model.faults import (
    BandwidthFault,
    LatencyFault,
    LimitDataFault,
    PartitionFault,
    ResetPeerFault,
    SlicerFault,
    SlowCloseFault,
    TimeoutFault,
)
from ..units import Duration
from .base import AppliedFault, DriverConfig, DriverError, Target, Unreachable

__all__ = [
    "DEFAULT_URL",
    "Proxy",
    "Toxic",
    "ToxiproxyClient",
    "ToxiproxyDriver",
    "ToxiproxyError",
    "default_url",
    "proxy_target",
    "proxy_targets",
]

DEFAULT_URL = "http://127.0.0.1:8474"
"""Where a Toxiproxy API listens unless ``TOXIPROXY_URL`` says otherwise."""

Stream = Literal["upstream", "downstream"]
JSON = dict[str, Any]

_INT64_MAX = 2**63 - 1
_GONE = frozenset({"proxy not found", "toxic not found"})
_IDEMPOTENT = frozenset({"GET", "DELETE"})


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """``TOXIPROXY_URL`` from ``environ`` (by default the process environment), else 8474 on
    loopback."""
    found = (os.environ if environ is None else environ).get("TOXIPROXY_URL", "").strip()
    return _api_url(found or DEFAULT_URL)


def _api_url(text: str) -> str:
    """A Toxiproxy API base URL, with ``http://`` added when no scheme is given (as the Go
    client does) and no trailing slash."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise DriverError(f"'{text}' is not a Toxiproxy API URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise DriverError(
            f"'{text}' is not a Toxiproxy API URL: expected e.g. 'http://127.0.0.1:8474'"
        )
    return text.rstrip("/")


class ToxiproxyError(DriverError):
    """The API answered a request with an error status; carries what it said."""

    def __init__(self, method: str, url: str, status: int, message: str) -> None:
        self.method = method
        self.url = url
        """The full URL of the request that failed."""
        self.status = status
        self.message = message
        """The server's own words (the ``error`` of its JSON body, else the body's text)."""
        super().__init__(f"Toxiproxy API answered {status} to {method} {url}: {message}")

    @property
    def gone(self) -> bool:
        """True when the proxy or toxic asked about does not exist (a Toxiproxy 404)."""
        return self.status == 404 and self.message in _GONE


@dataclass(frozen=True)
class Toxic:
    """One toxic as the API shows it."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: JSON = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        """A toxic from the API's JSON."""
        return cls(
            str(data["name"]),
            str(data["type"]),
            str(data["stream"]),
            float(data["toxicity"]),
            dict(data.get("attributes") or {}),
        )


@dataclass(frozen=True)
class Proxy:
    """One proxy as the API shows it."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[Toxic, ...] = ()

    @classmethod
    def from_json(cls, data: JSON) -> Self:
        """A proxy from the API's JSON."""
        return cls(
            str(data["name"]),
            str(data["listen"]),
            str(data["upstream"]),
            bool(data["enabled"]),
            tuple(Toxic.from_json(t) for t in data.get("toxics") or ()),
        )

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return int(self.listen.rsplit(":", 1)[1])


def _unsent(error: BaseException) -> bool:
    """The request never left: there was no connection to send it on."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _retryable(method: str, error: BaseException) -> bool:
    """Safe to send again: the request never left, or sending it twice does no harm."""
    return _unsent(error) or (method in _IDEMPOTENT and isinstance(error, httpx.TransportError))


def _message(response: httpx.Response) -> str:
    """The server's message from an error response: ``{"error": ..., "status": N}`` or text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip() or response.reason_phrase or "(no message)"


def _segment(name: str) -> str:
    """``name`` as one URL path segment: percent-encoded, with ``.``/``..`` encoded too (an
    HTTP client would otherwise remove them)."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _path(*parts: str) -> str:
    return "/" + "/".join(_segment(part) for part in parts)


class ToxiproxyClient:
    """An async client for one Toxiproxy API server.

    Timeouts: 2 s to connect, 10 s for a whole request. Requests that never reached the
    server are retried, and so are GETs and DELETEs; a POST that may have arrived is not.
    Belongs to the event loop it is first used in, like the ``httpx.AsyncClient`` under it.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, connect_timeout: float = 2.0) -> None:
        self.url = _api_url(url)
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={"User-Agent": f"chaoskit/{__version__}"},  # never "Mozilla/": blocked
            trust_env=False,  # an HTTP_PROXY meant for the internet must not catch loopback
        )

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the API ---------------------------------------------------------------------------

    async def version(self) -> str:
        """The server's version, e.g. ``2.12.0``."""
        found = await self._object("GET", "/version")
        return str(found["version"])

    async def proxies(self) -> dict[str, Proxy]:
        """Every proxy, by name."""
        found = await self._object("GET", "/proxies")
        return {name: Proxy.from_json(data) for name, data in found.items()}

    async def proxy(self, name: str) -> Proxy:
        """One proxy; :class:`ToxiproxyError` (404) if there is none of that name."""
        return Proxy.from_json(await self._object("GET", _path("proxies", name)))

    async def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", enabled: bool = True
    ) -> Proxy:
        """Create a proxy; ``listen`` port 0 picks a free port (read it from the result)."""
        body = {"name": name, "listen": listen, "upstream": upstream, "enabled": enabled}
        return Proxy.from_json(await self._object("POST", "/proxies", body))

    async def update_proxy(
        self,
        name: str,
        *,
        enabled: bool | None = None,
        listen: str | None = None,
        upstream: str | None = None,
    ) -> Proxy:
        """Change the given fields only; toxics are kept. Disabling refuses new connections
        and closes the open ones."""
        given = {"enabled": enabled, "listen": listen, "upstream": upstream}
        body = {key: value for key, value in given.items() if value is not None}
        # POST, not PATCH: every 2.x server takes it (the Go client's Save() still uses it).
        return Proxy.from_json(await self._object("POST", _path("proxies", name), body))

    async def delete_proxy(self, name: str) -> None:
        """Delete a proxy, closing its connections."""
        await self._call("DELETE", _path("proxies", name))

    async def toxics(self, proxy: str) -> list[Toxic]:
        """A proxy's toxics: upstream ones first, each stream in the order added."""
        path = _path("proxies", proxy, "toxics")
        found = await self._call("GET", path)
        if not isinstance(found, list):
            raise self._unexpected("GET", path, found)
        return [Toxic.from_json(t) for t in found]

    async def add_toxic(
        self,
        proxy: str,
        type: str,
        attributes: JSON | None = None,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
    ) -> Toxic:
        """Add a toxic (named ``<type>_<stream>`` by the server unless ``name`` is given)."""
        body: JSON = {"type": type, "stream": stream, "toxicity": toxicity}
        body["attributes"] = dict(attributes or {})
        if name is not None:
            body["name"] = name
        return Toxic.from_json(await self._object("POST", _path("proxies", proxy, "toxics"), body))

    async def update_toxic(
        self,
        proxy: str,
        name: str,
        attributes: JSON | None = None,
        *,
        toxicity: float | None = None,
    ) -> Toxic:
        """Change the given attributes (and toxicity) of a toxic; the rest stay."""
        body: JSON = {"attributes": dict(attributes or {})}
        if toxicity is not None:
            body["toxicity"] = toxicity
        path = _path("proxies", proxy, "toxics", name)
        return Toxic.from_json(await self._object("POST", path, body))

    async def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic; data it holds back is let through at once."""
        await self._call("DELETE", _path("proxies", proxy, "toxics", name))

    async def populate(self, proxies: list[JSON]) -> list[Proxy]:
        """Create or replace proxies from ``{name, listen, upstream, enabled?}`` entries;
        entries matching an existing proxy exactly leave it (and its toxics) alone."""
        found = await self._object("POST", "/populate", list(proxies))
        return [Proxy.from_json(p) for p in found.get("proxies") or ()]

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        await self._call("POST", "/reset")

    # -- plumbing --------------------------------------------------------------------------

    async def _object(self, method: str, path: str, body: object = None) -> JSON:
        found = await self._call(method, path, body)
        if not isinstance(found, dict):
            raise self._unexpected(method, path, found)
        return found

    def _unexpected(self, method: str, path: str, found: object) -> DriverError:
        return DriverError(
            f"unexpected answer to {method} {self.url}{path}: {str(found)[:200]!r}; "
            "is it a Toxiproxy API server?"
        )

    async def _call(self, method: str, path: str, body: object = None) -> Any:
        """Send one request; the decoded JSON answer (None for an empty one) or an error."""
        response, maybe_done = await self._send(method, path, body)
        if response.is_success:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise self._unexpected(method, path, response.text) from None
        error = ToxiproxyError(method, str(response.url), response.status_code, _message(response))
        if method == "DELETE" and maybe_done and error.gone:
            return None  # an earlier attempt deleted it; only its answer was lost
        raise error

    async def _send(self, method: str, path: str, body: object) -> tuple[httpx.Response, bool]:
        """The response, and whether an earlier attempt may already have been carried out."""
        maybe_done = False
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda error: _retryable(method, error)),
            stop=stop_after_attempt(3) | stop_after_delay(self._timeout),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        response = await self._http.request(method, path, json=body)
                    except httpx.TransportError as error:
                        maybe_done = maybe_done or not _unsent(error)
                        raise
                    return response, maybe_done
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise Unreachable(
                f"no Toxiproxy API reachable at {self.url} ({error or type(error).__name__}): "
                "start one with `chaoskit proxy` (or a toxiproxy-server), or set TOXIPROXY_URL "
                "to the API of the one you run"
            ) from None
        except httpx.TimeoutException:
            raise DriverError(
                f"the Toxiproxy API at {self.url} did not answer {method} {path} within "
                f"{self._timeout:g}s"
            ) from None
        except httpx.TransportError as error:
            raise DriverError(
                f"{method} {self.url}{path} failed: {error or type(error).__name__}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or reraises")


# ---------------------------------------------------------------------------------------------
# Targets


def proxy_target(url: str, proxy: str, name: str | None = None) -> Target:
    """A target for the proxy called ``proxy`` on the API server at ``url``."""
    return Target("proxy", name or proxy, {}, {"url": _api_url(url), "proxy": proxy})


async def proxy_targets(client: ToxiproxyClient) -> list[Target]:
    """Every proxy on the client's server, as targets named by proxy name."""
    return [proxy_target(client.url, name) for name in sorted(await client.proxies())]


# ---------------------------------------------------------------------------------------------
# Unit conversions: exactly what the API takes, or a refusal that says what would fit


def _exact(amount: int, step: int, unit: str, what: str) -> int:
    """``amount`` in whole ``unit`` (``step`` of it make one), or a refusal naming the two
    nearest values that would fit."""
    if amount < 0:
        raise DriverError(f"{what} is negative")
    count, rest = divmod(amount, step)
    if rest:
        raise DriverError(
            f"{what} is not a whole number of {unit}, which is what Toxiproxy takes: "
            f"write '{count}{unit}' or '{count + 1}{unit}'"
        )
    if count > _INT64_MAX:
        raise DriverError(f"{what} is too large for Toxiproxy")
    return count


def _ms(value: Duration, what: str) -> int:
    return _exact(value.nanoseconds, 1_000_000, "ms", f"{what} '{value}'")


def _us(value: Duration, what: str) -> int:
    return _exact(value.nanoseconds, 1_000, "us", f"{what} '{value}'")


def _kb_per_s(fault: BandwidthFault) -> int:
    """The rate in kB/s, where 1 kB = 1000 bytes (Toxiproxy's unit)."""
    if fault.rate.bytes_per_second < 1000:
        raise DriverError(
            f"bandwidth rate '{fault.rate}' is below 1kB/s, the smallest rate Toxiproxy can "
            "apply; to stop traffic use a partition"
        )
    return _exact(fault.rate.bytes_per_second, 1000, "kB/s", f"bandwidth rate '{fault.rate}'")


def _bytes(value: int, what: str) -> int:
    if not 0 <= value <= _INT64_MAX:
        raise DriverError(f"{what} of {value} bytes is out of Toxiproxy's range")
    return value


def _toxic_spec(fault: Fault) -> tuple[str, JSON] | None:
    """The toxic type and attributes for a network fault; None for other faults."""
    if isinstance(fault, LatencyFault):
        latency = _ms(fault.latency, "latency")
        return "latency", {"latency": latency, "jitter": _ms(fault.jitter, "latency jitter")}
    if isinstance(fault, BandwidthFault):
        return "bandwidth", {"rate": _kb_per_s(fault)}
    if isinstance(fault, SlowCloseFault):
        return "slow_close", {"delay": _ms(fault.delay, "slow_close delay")}
    if isinstance(fault, TimeoutFault):
        return "timeout", {"timeout": _ms(fault.timeout, "timeout")}
    if isinstance(fault, ResetPeerFault):
        return "reset_peer", {"timeout": _ms(fault.timeout, "reset_peer timeout")}
    if isinstance(fault, SlicerFault):
        average = _bytes(fault.average_size.bytes, "slicer average_size")
        variation = _bytes(fault.size_variation.bytes, "slicer size_variation")
        if average <= 0 or variation >= average:
            # Either one crashes or hangs a real Toxiproxy server.
            raise DriverError(
                f"slicer needs 0 < size_variation ({fault.size_variation}) < average_size "
                f"({fault.average_size})"
            )
        delay = _us(fault.delay, "slicer delay")
        return "slicer", {"average_size": average, "size_variation": variation, "delay": delay}
    if isinstance(fault, LimitDataFault):
        return "limit_data", {"bytes": _bytes(fault.bytes.bytes, "limit_data")}
    return None


_STREAMS: dict[str, tuple[Stream, ...]] = {
    "upstream": ("upstream",),
    "downstream": ("downstream",),
    "both": ("upstream", "downstream"),
}
_HANG_STREAM = {"both": "both", "inbound": "upstream", "outbound": "downstream"}
"""A one-way partition drops what flows in (client to server) or out (server to client)."""


# ---------------------------------------------------------------------------------------------
# The driver


class ToxiproxyDriver:
    """Latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data and partition
    (hang or refuse) on proxies of one or more Toxiproxy API servers."""

    name = "toxiproxy"

    def __init__(self, url: str | None = None) -> None:
        """``url``: the API for targets whose ref names none (default: :func:`default_url`)."""
        self.url = _api_url(url) if url else default_url()
        self._clients: dict[str, ToxiproxyClient] = {}

    @classmethod
    def from_config(cls, config: DriverConfig) -> Self:
        """The driver for the run's Toxiproxy API."""
        return cls(config.toxiproxy_url)

    def client(self, url: str) -> ToxiproxyClient:
        """The client for the API at ``url``, made on first use and kept until :meth:`aclose`."""
        url = _api_url(url)
        if url not in self._clients:
            self._clients[url] = ToxiproxyClient(url)
        return self._clients[url]

    async def aclose(self) -> None:
        """Close every client this driver made."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        """The record of ``fault`` on ``target``: the API URL, the proxy, and the toxics to add
        (or the proxy to disable) with their exact names; touches nothing."""
        if target.kind != "proxy":
            raise DriverError(f"the toxiproxy driver cannot act on a {target.kind} target")
        where = {
            "url": _api_url(str(target.ref.get("url") or self.url)),
            "proxy": str(target.ref.get("proxy") or target.name),
        }
        record_id = uuid.uuid4().hex
        if isinstance(fault, PartitionFault):
            if fault.mode == "refuse":
                params = {**where, "enabled": False}
                return AppliedFault(
                    self.name, "partition", target, params, {**where, "enable": True}, record_id
                )
            if fault.mode != "hang":
                raise DriverError(
                    f"partition mode '{fault.mode}' needs the docker driver: a proxy can only "
                    "'hang' or 'refuse' its connections"
                )
            kind, attributes = "timeout", {"timeout": 0}
            streams, toxicity = _STREAMS[_HANG_STREAM[fault.direction]], 1.0
        else:
            spec = _toxic_spec(fault)
            if spec is None:
                raise DriverError(f"the toxiproxy driver cannot apply a {fault.type} fault")
            kind, attributes = spec
            streams = _STREAMS[getattr(fault, "stream", "downstream")]
            toxicity = float(getattr(fault, "toxicity", 1.0))
        toxics = [
            {
                "name": f"chaoskit-{record_id[:8]}-{fault.type}-{stream}",
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": dict(attributes),
            }
            for stream in streams
        ]
        undo = {**where, "remove_toxics": [t["name"] for t in toxics]}
        return AppliedFault(
            self.name, fault.type, target, {**where, "toxics": toxics}, undo, record_id
        )

    async def check(self, record: AppliedFault) -> None:
        """Before anything is applied: the API answers, the proxy exists and, for a refuse
        partition, is enabled now (else its revert would enable a proxy that was disabled
        before the fault). Raises :class:`DriverError` saying which."""
        params = record.params
        client, name = self.client(params["url"]), params["proxy"]
        try:
            proxy = await client.proxy(name)
        except ToxiproxyError as error:
            if error.gone:
                raise DriverError(f"no proxy '{name}' at {params['url']}") from None
            raise
        if "enabled" in params and not proxy.enabled:
            raise DriverError(
                f"proxy '{name}' at {params['url']} is disabled already: a refuse partition "
                "would change nothing, and taking it back would enable it; enable the proxy "
                "first or choose another target"
            )

    async def apply(self, record: AppliedFault) -> None:
        """Add the planned toxics (all or none), or disable the proxy."""
        params = record.params
        client, proxy = self.client(params["url"]), params["proxy"]
        if "enabled" in params:
            await client.update_proxy(proxy, enabled=bool(params["enabled"]))
            return
        added: list[str] = []
        try:
            for toxic in params["toxics"]:
                await client.add_toxic(
                    proxy,
                    toxic["type"],
                    toxic["attributes"],
                    name=toxic["name"],
                    stream=toxic["stream"],
                    toxicity=toxic["toxicity"],
                )
                added.append(toxic["name"])
        except BaseException:
            for name in added:  # half a fault is worse than none; if this fails too, the
                with contextlib.suppress(DriverError):  # journaled record lets revert retry
                    await client.remove_toxic(proxy, name)
            raise

    async def revert(self, record: AppliedFault) -> None:
        """Remove the record's toxics, or re-enable the proxy; what is already gone is fine."""
        undo = record.undo
        client, proxy = self.client(undo["url"]), undo["proxy"]
        try:
            for name in undo.get("remove_toxics", ()):
                try:
                    await client.remove_toxic(proxy, name)
                except ToxiproxyError as error:
                    if not (error.gone and error.message == "toxic not found"):
                        raise
            if undo.get("enable"):
                await client.update_proxy(proxy, enabled=True)
        except ToxiproxyError as error:
            if not error.gone:  # the proxy is gone, and every fault on it with it
                raise
