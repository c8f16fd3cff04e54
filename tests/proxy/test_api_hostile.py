"""Hostile requests found by review and by the API fuzz: each gets a clear 4xx (or the 500 that
Toxiproxy documents for a listen failure), never an unhandled exception or a traceback."""

from __future__ import annotations

import gzip
import json
import logging
import re
import socket

import httpx
import pytest

from chaoskit.proxy import ProxyServer
from chaoskit.proxy._api import MAX_BODY

from .conftest import Upstream, create_proxy
from .test_api import error_of


@pytest.fixture(autouse=True)
def _no_traceback(caplog: pytest.LogCaptureFixture) -> object:
    """Fail the test if the server logged an exception (a traceback) while it ran."""
    caplog.set_level(logging.INFO)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    broken = [r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not broken, broken


def raw(server: ProxyServer, request: bytes) -> bytes:
    """Send ``request`` as is; the answer, read to its Content-Length or to the end."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
            head, ended, body = bytes(data).partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if ended and length and len(body) >= int(length[1]):
                break
    return bytes(data)


@pytest.mark.parametrize(
    "path", ["/proxies", "/populate", "/proxies/p/toxics", "/proxies/p/toxics/t", "/proxies/p"]
)
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 101 + b"]" * 101])
def test_deep_nesting_is_a_400(
    api: httpx.Client, upstream: Upstream, path: str, body: bytes
) -> None:
    create_proxy(api, upstream.address)
    api.post("/proxies/p/toxics", json={"type": "latency", "name": "t"})
    response = api.post(path, content=body)
    assert response.status_code == 400
    message = json.loads(response.text)["error"]
    assert message.startswith("bad request body: exceeded max depth")
    assert "100" in message


def test_nesting_within_the_limit_is_decoded(api: httpx.Client, upstream: Upstream) -> None:
    deep: object = {}
    for _ in range(95):
        deep = {"x": deep}
    body = {"name": "p", "upstream": upstream.address, "listen": "127.0.0.1:0", "extra": deep}
    assert api.post("/proxies", json=body).status_code == 201  # unknown keys are ignored


def test_nesting_inside_strings_does_not_count(api: httpx.Client, upstream: Upstream) -> None:
    body = {"name": "p", "upstream": upstream.address, "listen": "127.0.0.1:0", "x": "[" * 500}
    assert api.post("/proxies", json=body).status_code == 201


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(
    api: httpx.Client, upstream: Upstream, constant: bytes
) -> None:
    create_proxy(api, upstream.address)
    body = b'{"type": "latency", "toxicity": ' + constant + b"}"
    status, message = error_of(api.post("/proxies/p/toxics", content=body))
    assert status == 400 and "invalid character" in message
    assert api.get("/proxies/p/toxics").json() == []


def test_huge_numbers_are_refused_not_crashed(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address)
    for number in (b"1" + b"0" * 5000, b"1e400", b"-1e400", b"9223372036854775808"):
        body = b'{"type": "latency", "attributes": {"latency": ' + number + b"}}"
        status, message = error_of(api.post("/proxies/p/toxics", content=body))
        assert status == 400 and "cannot unmarshal number" in message
    for number in (b"1" + b"0" * 5000, b"1e400", b"-1e400"):  # beyond float32
        body = b'{"type": "latency", "toxicity": ' + number + b"}"
        assert error_of(api.post("/proxies/p/toxics", content=body))[0] == 400


def test_lone_surrogates_become_replacement_characters_as_in_go(
    api: httpx.Client, upstream: Upstream
) -> None:
    body = b'{"name": "a\\ud800b", "listen": "127.0.0.1:0", "upstream": "x\\udfff:1"}'
    created = api.post("/proxies", content=body)
    assert created.status_code == 201
    assert created.json()["name"] == "a\ufffdb"
    assert created.json()["upstream"] == "x\ufffd:1"
    assert list(api.get("/proxies").json()) == ["a\ufffdb"]  # listing it no longer crashes
    paired = b'{"name": "\\ud83d\\ude00", "listen": "127.0.0.1:0", "upstream": "x:1"}'
    assert api.post("/proxies", content=paired).json()["name"] == "\U0001f600"


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:\x00", "listen tcp: lookup tcp/\x00: unknown port"),
        ("127.0.0.1:\u0661", "listen tcp: lookup tcp/\u0661: unknown port"),  # not ASCII
        ("a" * 300 + ":0", f"listen tcp: lookup {'a' * 300}: no such host"),
        ("\ud800:0", "listen tcp: lookup \ufffd: no such host"),
        ("\x00:0", "listen tcp: lookup \x00: no such host"),
    ],
)
def test_unresolvable_listen_is_toxiproxys_500_not_a_crash(
    api: httpx.Client, upstream: Upstream, listen: str, message: str
) -> None:
    body = json.dumps({"name": "p", "listen": listen, "upstream": upstream.address})
    assert error_of(api.post("/proxies", content=body)) == (500, message)
    create_proxy(api, upstream.address, "q")
    status, update = error_of(api.patch("/proxies/q", content=json.dumps({"listen": listen})))
    assert status == 500 and update == message.removeprefix("listen tcp: ")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (".", "dot segment"),
        ("..", "dot segment"),
        ("a/b", "contains '/'"),
        ("/", "contains '/'"),
        ("a\x00b", "control character"),
        ("tab\there", "control character"),
        ("\x7f", "control character"),
        ("\x85", "control character"),
    ],
)
def test_names_that_cannot_be_a_path_segment_are_refused(
    api: httpx.Client, upstream: Upstream, name: str, why: str
) -> None:
    body = {"name": name, "listen": "127.0.0.1:0", "upstream": upstream.address}
    status, message = error_of(api.post("/proxies", json=body))
    assert status == 400 and message.startswith("invalid proxy name") and why in message
    populated = api.post("/populate", json=[{**body, "name": "ok"}, body])
    assert populated.status_code == 400
    assert populated.json()["error"].endswith("(proxy 2)")
    create_proxy(api, upstream.address, "p")
    status, message = error_of(
        api.post("/proxies/p/toxics", json={"name": name, "type": "latency"})
    )
    assert status == 400 and message.startswith("invalid toxic name") and why in message
    assert set(api.get("/proxies").json()) == {"p"}
    assert api.get("/proxies/p/toxics").json() == []


def test_odd_but_addressable_names_are_accepted(api: httpx.Client, upstream: Upstream) -> None:
    for name in ("...", ".a", "a b", "%2F", "?#&=", "ünï ☃", "\\", " "):
        create_proxy(api, upstream.address, name)
    assert len(api.get("/proxies").json()) == 8


def test_a_body_that_cannot_be_decompressed_is_a_400(api: httpx.Client) -> None:
    for encoding in ("gzip", "deflate"):  # aiohttp closes the connection after these
        headers = {"Content-Encoding": encoding, "Connection": "close"}
        response = api.post("/proxies", content=b"not compressed", headers=headers)
        assert 400 <= response.status_code < 500, response.text


def test_a_gzip_body_is_read(api: httpx.Client, upstream: Upstream) -> None:
    body = json.dumps({"name": "z", "listen": "127.0.0.1:0", "upstream": upstream.address})
    response = api.post(
        "/proxies", content=gzip.compress(body.encode()), headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 201


def test_a_header_field_over_8190_bytes_is_refused(server: ProxyServer) -> None:
    """Only the request line may be long: 128 header fields of 1 MiB each would let one
    unfinished request hold 128 MiB."""
    request = f"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 9000}\r\n\r\n"
    assert raw(server, request.encode()).split(b" ", 2)[1] == b"400"


def test_bodies_toxiproxy_reads_are_read(api: httpx.Client, upstream: Upstream) -> None:
    """A body of several MiB (a large /populate) is accepted, as Toxiproxy accepts it."""
    proxies = [{"name": "big", "listen": "127.0.0.1:0", "upstream": upstream.address}]
    body = json.dumps(proxies).encode() + b" " * (3 * 1024 * 1024)
    response = api.post("/populate", content=body)
    assert response.status_code == 201, response.text
    assert [p["name"] for p in response.json()["proxies"]] == ["big"]


def test_too_large_bodies_are_a_json_413(api: httpx.Client, server: ProxyServer) -> None:
    big = b'{"name": "' + b"a" * MAX_BODY + b'"}'
    for path in ("/proxies", "/populate"):
        response = api.post(path, content=big)
        assert response.status_code == 413
        assert json.loads(response.text)["error"].startswith("request body too large")
    # A declared length that is too large is refused before the body arrives.
    answer = raw(
        server,
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
        b"Connection: close\r\n\r\n{}",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_chunked_bodies_and_missing_content_type(api: httpx.Client, server: ProxyServer) -> None:
    answer = raw(
        server,
        b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\n[[[[[\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"bad request body" in answer


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET * HTTP/1.1",
        b"GARBAGE",
        b"GET /proxies HTTP/9.9",
        b"GET /proxies/\xff HTTP/1.1",
        b"FOO /proxies HTTP/1.1",
    ],
)
def test_malformed_http_is_a_400_and_logged_in_one_line(
    server: ProxyServer, api: httpx.Client, request_line: bytes
) -> None:
    answer = raw(server, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.split(b" ", 2)[1][:1] == b"4", answer[:100]
    assert api.get("/version").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/proxies/%ff",
        "/proxies/%00/toxics",
        "/proxies/p%2Fq",
        "/proxies/p?x=%ff&y",
        "/proxies/p/toxics/%",
    ],
)
def test_odd_paths_are_answered(server: ProxyServer, path: str) -> None:
    answer = raw(server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1][:1] == b"4", answer[:200]


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "//proxies", "/proxies"),
        ("GET", "/./proxies", "/proxies"),
        ("DELETE", "/proxies/../version", "/version"),
        ("GET", "/proxies/%2E%2E", "/"),  # dot segments count once decoded
        ("POST", "//reset?x=%20&y", "/reset?x=%20&y"),  # the query as it came
        ("GET", "/nope//there/", "/nope/there/"),  # the trailing slash kept; unrouted too
        ("GET", "/proxies/%ff/.", "/proxies/%FF"),  # bytes that are not UTF-8 stay themselves
        ("GET", "/a%25ff/./b%3Fc", "/a%25ff/b%3Fc"),  # an escaped % or ? stays escaped
    ],
)
def test_paths_that_are_not_clean_are_redirected_as_toxiproxy_does(
    server: ProxyServer, method: str, path: str, location: str
) -> None:
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    head = raw(server, request.encode()).partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 301 "), head
    assert f"\r\nLocation: {location}\r\n" in head
    assert "X-Toxiproxy-Request-Id" not in head  # the router answers before any middleware


def test_a_name_of_100000_characters_can_be_read_changed_and_deleted(
    server: ProxyServer, upstream: Upstream
) -> None:
    """Go reads a request head of up to 1 MiB, so such a name works in Toxiproxy (no client
    here can send it: httpx stops at 65,536 characters of URL)."""
    name = "n" * 100_000

    def call(method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        answer = raw(server, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return answer.split(b" ", 2)[1]

    proxy = {"name": name, "listen": "127.0.0.1:0", "upstream": upstream.address}
    assert call("POST", "/proxies", json.dumps(proxy).encode()) == b"201"
    assert call("GET", f"/proxies/{name}") == b"200"
    assert call("POST", f"/proxies/{name}/toxics", b'{"type": "latency"}') == b"200"
    assert call("DELETE", f"/proxies/{name}/toxics/latency_downstream") == b"204"
    assert call("DELETE", f"/proxies/{name}") == b"204"
    assert call("GET", f"/proxies/{name}") == b"404"


def test_names_with_braces_are_addressable(api: httpx.Client, upstream: Upstream) -> None:
    create_proxy(api, upstream.address, "{a}")
    api.post("/proxies/%7Ba%7D/toxics", json={"name": "}", "type": "latency"})
    assert api.get("/proxies/%7Ba%7D/toxics/%7D").json()["name"] == "}"
    assert api.delete("/proxies/%7Ba%7D").status_code == 204
