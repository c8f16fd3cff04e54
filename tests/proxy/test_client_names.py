"""chaoskit's Toxiproxy client can address every proxy and toxic name the server accepts."""

from __future__ import annotations

import asyncio
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoskit.drivers.toxiproxy import ToxiproxyClient, ToxiproxyError
from chaoskit.proxy import ProxyServer

names = st.one_of(
    st.text(min_size=1, max_size=16),
    st.text(string.punctuation + " .%", min_size=1, max_size=6),
    st.sampled_from(["...", ".a", "%2F", "%2e%2e", "%", "?", "#", "a b", "\\", "☃", "\ufffd"]),
)


async def round_trip(url: str, proxy: str, toxic: str) -> None:
    """Create, read, change and delete ``proxy`` and its toxic ``toxic`` by name."""
    async with ToxiproxyClient(url) as client:
        try:
            await client.create_proxy(proxy, "127.0.0.1:1")
        except ToxiproxyError as error:
            assert error.status == 400 and error.message.startswith("invalid proxy name")
            return
        assert (await client.proxy(proxy)).name == proxy
        assert (await client.update_proxy(proxy, enabled=False)).enabled is False
        try:
            await client.add_toxic(proxy, "latency", {"latency": 5}, name=toxic)
        except ToxiproxyError as error:
            assert error.status == 400 and error.message.startswith("invalid toxic name")
        else:
            updated = await client.update_toxic(proxy, toxic, {"latency": 7})
            assert (updated.name, updated.attributes["latency"]) == (toxic, 7)
            assert [t.name for t in await client.toxics(proxy)] == [toxic]
            await client.remove_toxic(proxy, toxic)
            assert await client.toxics(proxy) == []
        await client.delete_proxy(proxy)
        assert await client.proxies() == {}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(proxy=names, toxic=names)
def test_every_accepted_name_round_trips(server: ProxyServer, proxy: str, toxic: str) -> None:
    asyncio.run(round_trip(server.url, proxy, toxic))


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_sent_encoded(server: ProxyServer, name: str) -> None:
    """The client does not drop the segment (which would read ``/proxies`` or ``/`` as if it
    were the proxy): it sends it encoded, and the server's router, like Toxiproxy's, cleans the
    decoded path and redirects, which the client reports as an error."""

    async def ask() -> None:
        async with ToxiproxyClient(server.url) as client:
            with pytest.raises(ToxiproxyError) as refused:
                await client.proxy(name)
            assert refused.value.status == 301
            assert refused.value.url.endswith("/proxies/" + "%2E" * len(name))

    asyncio.run(ask())
