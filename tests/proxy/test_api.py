"""The HTTP API against Toxiproxy 2.12's (chaoskit/proxy/openapi.yaml, docs/proxy.md): bodies,
codes, quirks."""

from __future__ import annotations

import errno
import json
import re
import socket

import httpx
import pytest
from waiting import wait_until

from .conftest import Upstream, add_toxic, connect, create_proxy, recv_exactly

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def error_of(response: httpx.Response) -> tuple[int, str]:
    """Status and message of an error, after checking its exact shape."""
    assert response.headers["content-type"] == TEXT
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text.endswith("\n")
    body = json.loads(response.text)
    assert list(body) == ["error", "status"]
    assert body["status"] == response.status_code
    return response.status_code, body["error"]


def test_version_is_hand_formatted(api: httpx.Client) -> None:
    response = api.get("/version")
    assert response.status_code == 200
    assert response.content == b'{"version": "2.12.0"}\n'
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    assert response.headers["x-toxiproxy-request-id"]


def test_browsers_are_refused_on_routes_only_as_toxiproxy_does(api: httpx.Client) -> None:
    browser = {"User-Agent": "Mozilla/5.0 (X11)"}
    response = api.get("/proxies", headers=browser)
    assert response.status_code == 403
    assert response.text == "User agent not allowed\n"
    assert response.headers["content-type"] == TEXT
    assert re.fullmatch("[0-9a-f]{20}", response.headers["x-toxiproxy-request-id"])
    # The router answers before the browser block: no route is 404, a wrong method 405.
    assert api.get("/nope", headers=browser).status_code == 404
    assert api.put("/proxies", headers=browser).status_code == 405


def test_a_slicer_variation_as_large_as_its_average_is_accepted_and_slices(
    api: httpx.Client, upstream: Upstream
) -> None:
    """Toxiproxy accepts it and never crashes on it (a cut lands at 0 at worst, making an
    empty piece); above the average a cut can fall before 0, which panics Toxiproxy."""
    port = create_proxy(api, upstream.address)
    attributes = {"average_size": 8, "size_variation": 8, "delay": 0}
    answer = api.post(
        "/proxies/p/toxics", json={"type": "slicer", "stream": "upstream", "attributes": attributes}
    )
    assert answer.status_code == 200, answer.text
    payload = bytes(range(256)) * 8
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(payload)
        server_side = upstream.accept()
        assert recv_exactly(server_side, len(payload)) == payload


def test_unrouted_requests(api: httpx.Client) -> None:
    missing = api.get("/nope")
    assert (missing.status_code, missing.text) == (404, "404 page not found\n")
    assert api.get("/proxies/").status_code == 404  # trailing slashes are not matched
    wrong_method = api.put("/proxies")
    assert wrong_method.status_code == 405
    assert wrong_method.content == b""
    assert "content-type" not in wrong_method.headers
    assert "x-toxiproxy-request-id" not in wrong_method.headers


def test_create_proxy_shape_and_port_zero(api: httpx.Client, upstream: Upstream) -> None:
    assert api.get("/proxies").content == b"{}"
    response = api.post(
        "/proxies", json={"name": "db", "listen": "127.0.0.1:0", "upstream": upstream.address}
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == JSON
    assert not response.text.endswith("\n")
    body = response.json()
    assert list(body) == ["name", "listen", "upstream", "enabled", "Logger", "toxics"]
    assert body["Logger"] == {} and body["toxics"] == [] and body["enabled"] is True
    host, port = body["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert api.get("/proxies/db").json()["listen"] == body["listen"]
    assert list(api.get("/proxies").json()) == ["db"]


@pytest.mark.parametrize(
    ("listen", "shown"),
    [("localhost:0", "127.0.0.1:"), ("", "[::]:"), ("0.0.0.0:0", "[::]:")],
)
def test_listen_addresses_resolve_like_go(
    api: httpx.Client, upstream: Upstream, listen: str, shown: str
) -> None:
    body = api.post(
        "/proxies", json={"name": "x", "listen": listen, "upstream": upstream.address}
    ).json()
    assert body["listen"].startswith(shown)
    assert int(body["listen"].rsplit(":", 1)[1]) > 0


def test_create_errors_in_order(api: httpx.Client, upstream: Upstream) -> None:
    assert error_of(api.post("/proxies", content=b"{nope"))[0] == 400
    assert error_of(api.post("/proxies", content=b""))[1] == "bad request body: EOF"
    assert error_of(api.post("/proxies", json={})) == (400, "missing required field: name")
    assert error_of(api.post("/proxies", json={"name": "a"})) == (
        400,
        "missing required field: upstream",
    )
    status, message = error_of(api.post("/proxies", json={"name": 5, "upstream": "x:1"}))
    assert status == 400 and message.startswith("bad request body: json: cannot unmarshal number")
    create_proxy(api, upstream.address, "a")
    assert error_of(api.post("/proxies", json={"name": "a", "upstream": "x:1"})) == (
        409,
        "proxy already exists",
    )
    assert error_of(
        api.post("/proxies", json={"name": "b", "listen": "nope", "upstream": "x:1"})
    ) == (
        500,
        "listen tcp: address nope: missing port in address",
    )
    taken = api.get("/proxies/a").json()["listen"]
    status, message = error_of(
        api.post("/proxies", json={"name": "c", "listen": taken, "upstream": "x:1"})
    )
    assert status == 500
    assert message == f"listen tcp {taken}: bind: address already in use"
    assert set(api.get("/proxies").json()) == {"a"}  # the failures created nothing


def test_unknown_fields_and_case_insensitive_keys(api: httpx.Client, upstream: Upstream) -> None:
    body = api.post(
        "/proxies",
        json={"NAME": "k", "Listen": "127.0.0.1:0", "upstream": upstream.address, "toxics": [1]},
    ).json()
    assert body["name"] == "k" and body["toxics"] == []


def test_disabled_proxy_keeps_literal_listen_until_started(
    api: httpx.Client, upstream: Upstream
) -> None:
    body = api.post(
        "/proxies",
        json={"name": "d", "listen": "127.0.0.1:0", "upstream": upstream.address, "enabled": False},
    ).json()
    assert body["listen"] == "127.0.0.1:0" and body["enabled"] is False
    started = api.patch("/proxies/d", json={"enabled": True}).json()
    assert started["listen"] != "127.0.0.1:0" and started["enabled"] is True


def test_disable_refuses_closes_keeps_toxics_and_reuses_the_port(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="latency", attributes={"latency": 1})
    client = connect(port)
    server_side = upstream.accept()
    response = api.post("/proxies/p", json={"enabled": False})
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert client.recv(10) == b""  # live connections are closed
    assert server_side.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(port)
    shown = api.patch("/proxies/p", json={"enabled": True}).json()
    assert shown["listen"] == f"127.0.0.1:{port}"
    assert [t["name"] for t in shown["toxics"]] == ["latency_downstream"]
    connect(port).close()


def test_update_with_new_upstream_restarts_and_keeps_toxics(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, "127.0.0.1:1")
    add_toxic(api, type="noop")
    client = connect(port)
    assert client.recv(10) == b""  # nothing listens on port 1: the client is closed at once
    shown = api.post("/proxies/p", json={"upstream": upstream.address, "name": "ignored"}).json()
    assert shown["name"] == "p" and shown["upstream"] == upstream.address
    assert shown["listen"] == f"127.0.0.1:{port}" and len(shown["toxics"]) == 1
    client = connect(port)
    client.sendall(b"hi")
    assert upstream.accept().recv(2) == b"hi"
    status, message = error_of(api.patch("/proxies/p", json={"listen": "bad"}))
    assert (status, message) == (500, "address bad: missing port in address")
    assert error_of(api.patch("/proxies/none", json={}))[0] == 404


def test_delete_proxy(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address)
    response = api.delete("/proxies/p")
    assert (response.status_code, response.content) == (204, b"")
    with pytest.raises(ConnectionRefusedError):
        connect(port)
    assert error_of(api.delete("/proxies/p")) == (404, "proxy not found")
    assert error_of(api.get("/proxies/p")) == (404, "proxy not found")


def test_toxic_create_defaults_and_shape(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address)
    response = api.post("/proxies/p/toxics", json={"type": "latency", "stream": "UpStream"})
    assert response.status_code == 200  # not 201
    assert response.text == (
        '{"attributes":{"latency":0,"jitter":0},"name":"latency_UpStream",'
        '"type":"latency","stream":"UpStream","toxicity":1}'
    )
    add_toxic(api, type="slicer", name="s", toxicity=0.1, attributes={"average_size": 10})
    add_toxic(api, type="bandwidth", stream="upstream", attributes={"rate": 5, "junk": 1})
    listed = api.get("/proxies/p/toxics").json()
    assert [t["name"] for t in listed] == ["latency_UpStream", "bandwidth_upstream", "s"]
    assert listed[2]["toxicity"] == 0.1
    assert '"toxicity":0.1}' in api.get("/proxies/p/toxics/s").text
    assert listed[1]["attributes"] == {"rate": 5}


def test_toxic_create_errors_in_order(api: httpx.Client, upstream: Upstream) -> None:
    assert error_of(api.post("/proxies/none/toxics", content=b"{bad")) == (404, "proxy not found")
    create_proxy(api, upstream.address)
    assert error_of(api.post("/proxies/p/toxics", content=b"{bad"))[0] == 400
    assert error_of(api.post("/proxies/p/toxics", json={"type": "nope", "stream": ""})) == (
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert error_of(api.post("/proxies/p/toxics", json={"type": "nope"})) == (
        400,
        "invalid toxic type",
    )
    assert error_of(api.post("/proxies/p/toxics", json={}))[1] == "invalid toxic type"
    add_toxic(api, type="noop", name="n", stream="upstream")
    assert error_of(api.post("/proxies/p/toxics", json={"type": "latency", "name": "n"})) == (
        409,
        "toxic already exists",
    )  # names are unique across both streams
    for attributes in ({"latency": "100"}, {"latency": 1.5}, {"latency": True}):
        status, message = error_of(
            api.post("/proxies/p/toxics", json={"type": "latency", "attributes": attributes})
        )
        assert status == 400 and message.startswith("bad request body: json: cannot unmarshal")
    assert [t["name"] for t in api.get("/proxies/p/toxics").json()] == ["n"]


@pytest.mark.parametrize(
    ("toxic", "fragment"),
    [
        ({"type": "bandwidth", "attributes": {"rate": 0}}, "rate must be at least 1 KB/s"),
        ({"type": "bandwidth", "attributes": {"rate": -5}}, "rate must be at least 1 KB/s"),
        ({"type": "slicer"}, "average_size must be at least 1"),
        (
            {"type": "slicer", "attributes": {"average_size": 10, "size_variation": 11}},
            "size_variation must be at least 0 and at most average_size",
        ),
        ({"type": "latency", "attributes": {"latency": -1}}, "latency must not be negative"),
        ({"type": "latency", "attributes": {"jitter": -1}}, "jitter must not be negative"),
        ({"type": "timeout", "attributes": {"timeout": -1}}, "timeout must not be negative"),
        ({"type": "slow_close", "attributes": {"delay": -1}}, "delay must not be negative"),
        ({"type": "limit_data", "attributes": {"bytes": -1}}, "bytes must not be negative"),
        ({"type": "reset_peer", "attributes": {"timeout": -1}}, "timeout must not be negative"),
        (
            {"type": "slicer", "attributes": {"average_size": 10, "delay": -1}},
            "delay must not be negative",
        ),
    ],
)
def test_inputs_toxiproxy_crashes_on_or_misreads_get_a_clear_400(
    api: httpx.Client, upstream: Upstream, toxic: dict[str, object], fragment: str
) -> None:
    create_proxy(api, upstream.address)
    status, message = error_of(api.post("/proxies/p/toxics", json=toxic))
    assert status == 400 and fragment in message
    assert api.get("/proxies/p/toxics").json() == []


def test_toxic_update_is_partial(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address)
    add_toxic(api, type="latency", toxicity=0.5, attributes={"latency": 100, "jitter": 10})
    updated = api.patch(
        "/proxies/p/toxics/latency_downstream",
        json={"attributes": {"latency": 300}, "name": "x", "type": "timeout", "stream": "upstream"},
    ).json()
    assert updated["attributes"] == {"latency": 300, "jitter": 10}
    assert (updated["name"], updated["type"], updated["stream"]) == (
        "latency_downstream",
        "latency",
        "downstream",
    )
    assert updated["toxicity"] == 0.5
    assert (
        api.post("/proxies/p/toxics/latency_downstream", json={"toxicity": 1}).json()["toxicity"]
        == 1
    )
    bad = api.patch("/proxies/p/toxics/latency_downstream", json={"attributes": {"latency": -3}})
    assert error_of(bad)[0] == 400
    assert api.get("/proxies/p/toxics/latency_downstream").json()["attributes"]["latency"] == 300
    assert error_of(api.patch("/proxies/p/toxics/nope", json={})) == (404, "toxic not found")
    assert error_of(api.get("/proxies/q/toxics/nope")) == (404, "proxy not found")


def test_toxic_delete(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address)
    add_toxic(api, type="noop")
    response = api.delete("/proxies/p/toxics/noop_downstream")
    assert (response.status_code, response.content) == (204, b"")
    assert error_of(api.delete("/proxies/p/toxics/noop_downstream")) == (404, "toxic not found")


def test_toxics_can_be_added_to_a_disabled_proxy(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address, enabled=False)
    add_toxic(api, type="noop")
    assert len(api.get("/proxies/p").json()["toxics"]) == 1


def test_populate_validates_all_first(api: httpx.Client, upstream: Upstream) -> None:
    response = api.post(
        "/populate",
        json=[
            {"name": "a", "listen": "127.0.0.1:0", "upstream": upstream.address},
            {"listen": "127.0.0.1:0", "upstream": upstream.address},
        ],
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    assert response.json() == {
        "error": "missing required field: name at proxy 2",
        "status": 400,
        "proxies": None,
    }
    assert api.get("/proxies").json() == {}
    assert api.post("/populate", json={"name": "a"}).status_code == 400
    empty = api.post("/populate", json=[])
    assert (empty.status_code, empty.text) == (201, '{"proxies":null}')


def test_populate_keeps_identical_replaces_changed(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address, "keep")
    create_proxy(api, upstream.address, "change")
    add_toxic(api, "keep", type="noop")
    add_toxic(api, "change", type="noop")
    api.patch("/proxies/keep", json={"enabled": False})
    live = connect(create_proxy(api, upstream.address, "live"))
    add_toxic(api, "live", type="noop")
    live_port = api.get("/proxies/live").json()["listen"]
    server_side = upstream.accept()
    response = api.post(
        "/populate",
        json=[
            {"name": "keep", "listen": f"localhost:{port}", "upstream": upstream.address},
            {"name": "change", "listen": "127.0.0.1:0", "upstream": upstream.address},
            {"name": "live", "listen": live_port, "upstream": upstream.address},
            {"name": "new", "listen": "127.0.0.1:0", "upstream": upstream.address},
        ],
    )
    assert response.status_code == 201
    shown = {proxy["name"]: proxy for proxy in response.json()["proxies"]}
    assert list(shown) == ["keep", "change", "live", "new"]
    assert shown["keep"]["enabled"] is False and len(shown["keep"]["toxics"]) == 1
    assert shown["change"]["toxics"] == []  # replaced: toxics lost
    assert len(shown["live"]["toxics"]) == 1
    live.sendall(b"still")  # the untouched proxy's connection survived
    assert server_side.recv(5) == b"still"


def test_populate_partial_result_on_mid_list_failure(api: httpx.Client, upstream: Upstream) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    with taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        response = api.post(
            "/populate",
            json=[
                {"name": "one", "listen": "127.0.0.1:0", "upstream": upstream.address},
                {"name": "two", "listen": busy, "upstream": upstream.address},
                {"name": "three", "listen": "127.0.0.1:0", "upstream": upstream.address},
            ],
        )
    assert response.status_code == 500
    body = response.json()
    assert list(body) == ["error", "status", "proxies"]
    assert body["error"] == f"listen tcp {busy}: bind: address already in use"
    assert [proxy["name"] for proxy in body["proxies"]] == ["one"]
    assert set(api.get("/proxies").json()) == {"one"}


def test_reset_enables_and_clears_but_keeps_connections(
    api: httpx.Client, upstream: Upstream
) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="latency", attributes={"latency": 5})
    client = connect(port)
    server_side = upstream.accept()
    create_proxy(api, upstream.address, "off", enabled=False)
    response = api.post("/reset", content=b"ignored")
    assert (response.status_code, response.content) == (204, b"")
    proxies = api.get("/proxies").json()
    assert all(p["enabled"] and p["toxics"] == [] for p in proxies.values())
    client.sendall(b"alive")
    assert server_side.recv(5) == b"alive"


def test_metrics_only_when_asked(api: httpx.Client) -> None:
    assert api.get("/metrics").status_code == 404


def test_metrics_count_bytes_when_links_end(upstream: Upstream) -> None:
    import asyncio
    import threading

    from chaoskit.proxy import ProxyServer

    server = ProxyServer("127.0.0.1", 0, proxy_metrics=True)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=server.url, trust_env=False) as api:
            port = create_proxy(api, upstream.address)
            client = connect(port)
            client.sendall(b"12345")
            server_side = upstream.accept()
            assert server_side.recv(5) == b"12345"
            client.close()
            assert server_side.recv(1) == b""
            text = ""
            for _ in range(100):  # the counters are added once the link has ended
                text = api.post("/metrics").text
                if 'toxiproxy_proxy_received_bytes_total{direction="upstream"' in text:
                    break
            assert 'direction="upstream",listener="127.0.0.1:' in text
            line = next(
                row
                for row in text.splitlines()
                if row.startswith('toxiproxy_proxy_sent_bytes_total{direction="upstream"')
            )
            assert line.endswith(" 5.0")
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_initial_toxics_apply_before_the_first_connection(
    api: httpx.Client, upstream: Upstream
) -> None:
    response = api.post(
        "/proxies",
        json={
            "name": "t",
            "listen": "127.0.0.1:0",
            "upstream": upstream.address,
            "initial_toxics": [
                {"type": "limit_data", "stream": "upstream", "attributes": {"bytes": 3}}
            ],
        },
    )
    assert response.status_code == 201
    assert response.json()["toxics"][0]["type"] == "limit_data"
    client = connect(int(response.json()["listen"].rsplit(":", 1)[1]))
    client.sendall(b"abcdef")
    server_side = upstream.accept()
    data = b""
    while chunk := server_side.recv(10):
        data += chunk
    assert data == b"abc"
    bad = api.post(
        "/populate",
        json=[
            {"name": "u", "upstream": upstream.address, "listen": "127.0.0.1:0"},
            {
                "name": "v",
                "upstream": upstream.address,
                "listen": "127.0.0.1:0",
                "initial_toxics": [{"type": "bandwidth"}],
            },
        ],
    )
    assert bad.status_code == 400
    assert "(initial toxic 1 of proxy 2)" in bad.json()["error"]
    assert set(api.get("/proxies").json()) == {"t"}


def test_lease_removes_faults_unless_renewed(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address)
    add_toxic(api, type="timeout")
    api.patch("/proxies/p", json={"enabled": False})
    assert error_of(api.post("/proxies/p/lease", json={"ttl_ms": 0}))[0] == 400
    assert error_of(api.get("/proxies/p/lease")) == (404, "lease not found")
    held = api.post("/proxies/p/lease", json={"ttl_ms": 60_000}).json()
    assert held["ttl_ms"] == 60_000 and 0 < held["expires_in_ms"] <= 60_000
    assert api.delete("/proxies/p/lease").status_code == 204  # released: faults stay
    assert api.get("/proxies/p").json()["enabled"] is False
    api.post("/proxies/p/lease", json={"ttl_ms": 200})
    wait_until(lambda: api.get("/proxies/p").json()["enabled"], 5, "the lease to run out")
    assert api.get("/proxies/p").json()["toxics"] == []
    connect(port).close()
    assert error_of(api.get("/proxies/p/lease"))[0] == 404


def test_listen_failure_on_enable_is_a_500(api: httpx.Client, upstream: Upstream) -> None:
    port = create_proxy(api, upstream.address)
    api.patch("/proxies/p", json={"enabled": False})
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        status, message = error_of(api.patch("/proxies/p", json={"enabled": True}))
    finally:
        squatter.close()
    assert status == 500 and errno.errorcode[errno.EADDRINUSE] not in message
    assert message.endswith("bind: address already in use")
