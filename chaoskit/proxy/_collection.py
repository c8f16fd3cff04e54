"""The server's proxies: create, update, delete, populate, reset, and the toxics lease."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._addresses import AddressError, resolve
from ._decode import ProxyFields, check_name, decode_proxy, decode_toxic, decode_toxic_update
from ._errors import PROXY_EXISTS, PROXY_NOT_FOUND, TOXIC_NOT_FOUND, ApiError
from ._proxy import LinkEnded, Proxy
from ._toxics import ToxicSpec

__all__ = ["Lease", "PopulateError", "ProxyCollection"]

log = logging.getLogger("chaoskit.proxy")


class PopulateError(ApiError):
    """A populate that failed part-way: ``created`` holds the proxies made before it."""

    def __init__(self, error: ApiError, created: list[Proxy]) -> None:
        super().__init__(error.status, error.message)
        self.created = created


@dataclass
class Lease:
    """A proxy's toxics held on a timer: unless renewed, they are removed when it runs out."""

    ttl: float
    expires_at: float
    handle: asyncio.TimerHandle


def _internal(error: OSError) -> ApiError:
    return ApiError(500, str(error))


class ProxyCollection:
    """Every proxy of one server, by name."""

    def __init__(self, rng: random.Random, on_link_end: LinkEnded | None = None) -> None:
        self._rng = rng
        self._on_link_end = on_link_end
        self._proxies: dict[str, Proxy] = {}
        self._leases: dict[str, Lease] = {}
        self.on_change: Callable[[str], None] = lambda _message: None

    def __iter__(self) -> Any:
        return iter(sorted(self._proxies.values(), key=lambda proxy: proxy.name))

    def get(self, name: str) -> Proxy:
        """The proxy called ``name``, or 404."""
        proxy = self._proxies.get(name)
        if proxy is None:
            raise ApiError(*PROXY_NOT_FOUND)
        return proxy

    def _new(self, fields: ProxyFields) -> Proxy:
        return Proxy(
            fields.name or "",
            fields.listen or "",
            fields.upstream or "",
            rng=self._rng,
            on_link_end=self._on_link_end,
        )

    @staticmethod
    def _initial_toxics(fields: ProxyFields, where: str = "") -> list[ToxicSpec]:
        """chaoskit's extra: toxics to apply before the proxy accepts anything, all checked."""
        specs: list[ToxicSpec] = []
        for index, body in enumerate(fields.toxics or [], start=1):
            names = {spec.name for spec in specs}
            try:
                specs.append(decode_toxic(body, names.__contains__))
            except ApiError as error:
                raise ApiError(
                    error.status, f"{error.message} (initial toxic {index}{where})"
                ) from None
        return specs

    @staticmethod
    def _start(proxy: Proxy) -> None:
        try:
            proxy.start()
        except OSError as error:
            raise _internal(error) from None

    # -- proxies -------------------------------------------------------------------------------

    def create(self, body: Any) -> Proxy:
        """POST /proxies: checks in the real server's order, then listen if enabled."""
        fields = decode_proxy(body)
        if not fields.name:
            raise ApiError.missing("name")
        if not fields.upstream:
            raise ApiError.missing("upstream")
        check_name(fields.name, "proxy")
        if fields.name in self._proxies:
            raise ApiError(*PROXY_EXISTS)
        return self._install(fields, self._initial_toxics(fields), "created")

    def _install(self, fields: ProxyFields, toxics: list[ToxicSpec], verb: str) -> Proxy:
        """A new proxy with its initial toxics in place before it listens (if enabled)."""
        proxy = self._new(fields)
        for spec in toxics:
            proxy.add_toxic(spec)
        if fields.enabled is not False:
            self._start(proxy)
        self._proxies[proxy.name] = proxy
        self.on_change(
            f"{verb} proxy {proxy.name} listen={proxy.listen} upstream={proxy.upstream} "
            f"enabled={proxy.enabled} toxics={len(toxics)}"
        )
        return proxy

    def update(self, name: str, body: Any) -> Proxy:
        """POST/PATCH /proxies/{name}: a new listen or upstream restarts it; toxics are kept."""
        proxy = self.get(name)
        fields = decode_proxy(body)
        listen = fields.listen if fields.listen is not None else proxy.listen
        upstream = fields.upstream if fields.upstream is not None else proxy.upstream
        enabled = fields.enabled if fields.enabled is not None else proxy.enabled
        try:
            differs = str(resolve(listen)) != proxy.listen or upstream != proxy.upstream
        except AddressError as error:
            raise _internal(error) from None
        if differs:
            proxy.stop()
            proxy.listen, proxy.upstream = listen, upstream
        if enabled and not proxy.enabled:
            self._start(proxy)
        elif not enabled and proxy.enabled:
            proxy.stop()
        self.on_change(
            f"updated proxy {proxy.name} listen={proxy.listen} upstream={proxy.upstream} "
            f"enabled={proxy.enabled}"
        )
        return proxy

    def delete(self, name: str) -> None:
        """DELETE /proxies/{name}: stop it and forget it."""
        proxy = self.get(name)
        proxy.stop()
        del self._proxies[name]
        self._drop_lease(name)
        self.on_change(f"deleted proxy {name}")

    def populate(self, body: Any) -> list[Proxy]:
        """POST /populate: check every entry first, then create, keep or replace each in turn."""
        if not isinstance(body, list):
            kind = "object" if isinstance(body, dict) else type(body).__name__
            raise ApiError.bad_body(f"json: cannot unmarshal {kind} into Go value of type []proxy")
        entries: list[tuple[str, ProxyFields, list[ToxicSpec]]] = []
        for index, item in enumerate(body, start=1):
            fields = decode_proxy(item)
            if not fields.name:
                raise ApiError.missing(f"name at proxy {index}")
            if not fields.upstream:
                raise ApiError.missing(f"upstream at proxy {index}")
            try:
                check_name(fields.name, "proxy")
            except ApiError as error:
                raise ApiError(error.status, f"{error.message} (proxy {index})") from None
            toxics = self._initial_toxics(fields, f" of proxy {index}")
            entries.append((fields.name, fields, toxics))
        done: list[Proxy] = []
        for name, fields, toxics in entries:
            try:
                done.append(self._add_or_replace(name, fields, toxics))
            except ApiError as error:
                raise PopulateError(error, done) from None
        return done

    def _add_or_replace(self, name: str, fields: ProxyFields, toxics: list[ToxicSpec]) -> Proxy:
        existing = self._proxies.get(name)
        if existing is not None:
            try:
                same_listen = str(resolve(fields.listen or "")) == existing.listen
            except AddressError:
                same_listen = False
            if same_listen and existing.upstream == fields.upstream:
                return existing
            existing.stop()
            del self._proxies[existing.name]
            self._drop_lease(existing.name)
        verb = "replaced" if existing is not None else "created"
        return self._install(fields, toxics, f"{verb} (populate)")

    def reset(self) -> None:
        """POST /reset: every proxy enabled on its address, every toxic removed."""
        for proxy in list(self._proxies.values()):
            self._start(proxy)
            proxy.remove_all_toxics()
        self.on_change("reset: every proxy enabled, every toxic removed")

    def stop_all(self) -> None:
        """Stop every proxy and lease (server shutdown)."""
        for name in list(self._leases):
            self._drop_lease(name)
        for proxy in self._proxies.values():
            proxy.stop()

    # -- toxics --------------------------------------------------------------------------------

    def add_toxic(self, name: str, body: Any) -> ToxicSpec:
        """POST /proxies/{name}/toxics."""
        proxy = self.get(name)
        spec = decode_toxic(body, lambda toxic: proxy.toxic(toxic) is not None)
        proxy.add_toxic(spec)
        self.on_change(
            f"added toxic {spec.name} to proxy {name}: type={spec.kind.name} "
            f"stream={spec.stream} toxicity={spec.toxicity} attributes={spec.attributes}"
        )
        return spec

    def toxic(self, name: str, toxic: str) -> ToxicSpec:
        """The toxic called ``toxic`` on proxy ``name``, or 404."""
        spec = self.get(name).toxic(toxic)
        if spec is None:
            raise ApiError(*TOXIC_NOT_FOUND)
        return spec

    def update_toxic(self, name: str, toxic: str, body: Any) -> ToxicSpec:
        """POST/PATCH /proxies/{name}/toxics/{toxic}: only the attributes sent change."""
        proxy = self.get(name)
        spec = self.toxic(name, toxic)
        attributes, toxicity = decode_toxic_update(body, spec)
        spec.attributes, spec.toxicity = attributes, toxicity
        proxy.toxic_changed(spec)
        self.on_change(
            f"updated toxic {spec.name} on proxy {name}: toxicity={spec.toxicity} "
            f"attributes={spec.attributes}"
        )
        return spec

    def remove_toxic(self, name: str, toxic: str) -> None:
        """DELETE /proxies/{name}/toxics/{toxic}."""
        proxy = self.get(name)
        spec = self.toxic(name, toxic)
        proxy.remove_toxic(spec)
        self.on_change(f"removed toxic {toxic} from proxy {name}")

    # -- lease (chaoskit's dead-man's switch) --------------------------------------------------

    def lease(self, name: str, ttl: float) -> Lease:
        """Hold ``name``'s faults for ``ttl`` seconds; renewing replaces the timer."""
        self.get(name)
        loop = asyncio.get_running_loop()
        self._drop_lease(name)
        handle = loop.call_later(ttl, self._expire, name)
        lease = Lease(ttl, loop.time() + ttl, handle)
        self._leases[name] = lease
        return lease

    def leased(self, name: str) -> Lease | None:
        """The proxy's lease, if one is held."""
        self.get(name)
        return self._leases.get(name)

    def release(self, name: str) -> bool:
        """Give the lease up without touching the toxics; False if there was none."""
        self.get(name)
        return self._drop_lease(name)

    def _drop_lease(self, name: str) -> bool:
        lease = self._leases.pop(name, None)
        if lease is not None:
            lease.handle.cancel()
        return lease is not None

    def _expire(self, name: str) -> None:
        self._leases.pop(name, None)
        proxy = self._proxies.get(name)
        if proxy is None:
            return
        count = len(proxy.toxics())
        proxy.remove_all_toxics()
        try:
            proxy.start()
        except OSError as error:
            log.error("lease on proxy %s ran out; could not re-enable it: %s", name, error)
        self.on_change(f"lease on proxy {name} ran out: removed {count} toxic(s), proxy enabled")
