"""Property tests: non-destructive toxics never lose, duplicate or reorder a byte — whatever
the chain, the write sizes, or chain changes made while data is flowing."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chaoskit.proxy import run_in_thread

from .conftest import Echo, connect, recv_exactly

pytestmark = pytest.mark.slow

_names = itertools.count()

toxic = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("latency"),
            "attributes": st.fixed_dictionaries(
                {"latency": st.integers(0, 5), "jitter": st.integers(0, 3)}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("bandwidth"),
            "attributes": st.fixed_dictionaries({"rate": st.integers(2000, 20000)}),
        }
    ),
    st.integers(1, 3000).flatmap(
        lambda average: st.fixed_dictionaries(
            {
                "type": st.just("slicer"),
                "attributes": st.fixed_dictionaries(
                    {
                        "average_size": st.just(average),
                        "size_variation": st.integers(0, average),
                        "delay": st.integers(0, 200),
                    }
                ),
            }
        )
    ),
    st.just({"type": "noop"}),
).flatmap(
    lambda body: st.fixed_dictionaries(
        {
            "stream": st.sampled_from(["upstream", "downstream"]),
            "toxicity": st.sampled_from([0.0, 0.5, 1.0]),
        }
    ).map(lambda extra: {**body, **extra})
)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[httpx.Client, Echo]]:
    echo = Echo()
    with (
        run_in_thread(seed=7) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as api,
    ):
        yield api, echo
    echo.listener.close()


def _proxy(api: httpx.Client, echo: Echo, toxics: list[dict[str, Any]]) -> tuple[str, int]:
    name = f"p{next(_names)}"
    response = api.post(
        "/proxies", json={"name": name, "listen": "127.0.0.1:0", "upstream": echo.address}
    )
    assert response.status_code == 201, response.text
    for index, body in enumerate(toxics):
        added = api.post(f"/proxies/{name}/toxics", json={**body, "name": f"t{index}"})
        assert added.status_code == 200, added.text
    return name, int(response.json()["listen"].rsplit(":", 1)[1])


def _echo_through(port: int, writes: list[bytes]) -> bytes:
    client = connect(port, timeout=20)
    try:
        sender = threading.Thread(target=lambda: [client.sendall(w) for w in writes])
        sender.start()
        received = recv_exactly(client, sum(map(len, writes)))
        sender.join()
        return received
    finally:
        client.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    toxics=st.lists(toxic, max_size=4),
    writes=st.lists(st.binary(min_size=1, max_size=20_000), min_size=1, max_size=8),
)
def test_any_chain_delivers_every_byte_in_order(
    setup: tuple[httpx.Client, Echo], toxics: list[dict[str, Any]], writes: list[bytes]
) -> None:
    api, echo = setup
    name, port = _proxy(api, echo, toxics)
    try:
        assert _echo_through(port, writes) == b"".join(writes)
    finally:
        api.delete(f"/proxies/{name}")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "update"]), toxic), min_size=1, max_size=12
    ),
    size=st.integers(50_000, 400_000),
)
def test_chain_changes_during_traffic_never_lose_or_reorder(
    setup: tuple[httpx.Client, Echo], changes: list[tuple[str, dict[str, Any]]], size: int
) -> None:
    api, echo = setup
    name, port = _proxy(api, echo, [])
    payload = bytes(i % 251 for i in range(size))
    writes = [payload[i : i + 7000] for i in range(0, size, 7000)]
    live: list[str] = []

    def churn() -> None:
        for index, (action, body) in enumerate(changes):
            if action == "add" or not live:
                toxic_name = f"c{index}"
                api.post(f"/proxies/{name}/toxics", json={**body, "name": toxic_name})
                live.append(toxic_name)
            elif action == "remove":
                api.delete(f"/proxies/{name}/toxics/{live.pop(0)}")
            else:
                api.patch(f"/proxies/{name}/toxics/{live[-1]}", json={"toxicity": 1.0})

    churner = threading.Thread(target=churn)
    churner.start()
    try:
        assert _echo_through(port, writes) == payload
    finally:
        churner.join()
        api.delete(f"/proxies/{name}")
