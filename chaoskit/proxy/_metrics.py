"""``/metrics`` in Prometheus text format: bytes per proxy and direction, counted per link."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from ._connection import Link
from ._proxy import Proxy

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LABELS = ("direction", "proxy", "listener", "upstream")


class Metrics:
    """The server's collectors, in a registry of its own (never the process-global one)."""

    def __init__(self, *, proxy: bool, runtime: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.proxy = proxy
        if proxy:
            self._received = Counter(
                "toxiproxy_proxy_received_bytes",
                "Bytes the proxy read, added when a connection's link ends.",
                _LABELS,
                registry=self.registry,
            )
            self._sent = Counter(
                "toxiproxy_proxy_sent_bytes",
                "Bytes the proxy wrote, added when a connection's link ends.",
                _LABELS,
                registry=self.registry,
            )
        if runtime:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            self.registry.register(GC_COLLECTOR)

    def link_ended(self, proxy: Proxy, link: Link) -> None:
        """Add a finished link's byte counts (Toxiproxy counts them only when a link ends)."""
        if not self.proxy:
            return
        labels = (link.direction, proxy.name, proxy.listen, proxy.upstream)
        self._received.labels(*labels).inc(link.received)
        self._sent.labels(*labels).inc(link.sink.sent)

    def render(self) -> bytes:
        """The text exposition of every collector."""
        return generate_latest(self.registry)
