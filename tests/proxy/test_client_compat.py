"""The PyPI ``toxiproxy-python`` client drives the embedded server unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import NotFound, ProxyExists

from chaoskit.proxy import ProxyServer

from .conftest import Echo, connect, recv_exactly, round_trip


@pytest.fixture
def toxiproxy(server: ProxyServer) -> Iterator[Toxiproxy]:
    client = Toxiproxy()
    client.update_api_consumer("127.0.0.1", server.port)
    yield client
    client.update_api_consumer("127.0.0.1", 8474)  # the library keeps this in a class


def test_the_whole_client_surface(toxiproxy: Toxiproxy, echo: Echo) -> None:
    assert toxiproxy.running()
    assert b"2.12.0" in toxiproxy.version()
    proxy = toxiproxy.create(upstream=echo.address, name="shop")
    assert proxy.listen.startswith("127.0.0.1:") and proxy.enabled is True
    with pytest.raises(ProxyExists):
        APIConsumer.post("/proxies", json={"name": "shop", "upstream": echo.address})
    assert set(toxiproxy.proxies()) == {"shop"}
    port = int(proxy.listen.rsplit(":", 1)[1])

    client = connect(port)
    assert round_trip(client) < 0.08
    proxy.add_toxic(type="latency", attributes={"latency": 120})
    assert set(proxy.toxics()) == {"latency_downstream"}
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 120, "jitter": 0}
    assert round_trip(client) >= 0.12
    assert proxy.destroy_toxic("latency_downstream")
    assert round_trip(client) < 0.08

    with proxy.down(), pytest.raises(ConnectionRefusedError):
        connect(port)
    again = connect(port)
    again.sendall(b"up")
    assert recv_exactly(again, 2) == b"up"

    proxy.add_toxic(type="timeout", name="t", attributes={"timeout": 0})
    assert toxiproxy.reset()
    assert toxiproxy.get_proxy("shop").enabled is True
    assert proxy.toxics() == {}

    listen = proxy.listen
    populated = toxiproxy.populate(
        [
            {"name": "shop", "upstream": echo.address, "listen": listen},
            {"name": "cart", "upstream": echo.address, "listen": "127.0.0.1:0"},
        ]
    )
    assert [p.name for p in populated] == ["cart"]  # "shop" was already identical
    assert set(toxiproxy.proxies()) == {"shop", "cart"}

    toxiproxy.destroy(proxy)
    with pytest.raises(NotFound):
        APIConsumer.get("/proxies/shop")
    toxiproxy.destroy_all()
    assert toxiproxy.proxies() == {}
