"""API fuzz against the real embedded server on loopback: schemathesis from the published
OpenAPI description (valid and invalid data for every operation), then hypothesis with hostile
requests the description cannot express (any bytes, deep nesting, odd paths and methods).

Never a 5xx, the server answers afterwards, and its log has no traceback. The ``listen`` of any
generated body is pinned to ``127.0.0.1:0`` so that the fuzz binds nothing but loopback (and
Toxiproxy's documented 500 for a listen failure never comes up); hostile listen strings are in
test_api_hostile.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from chaoskit.proxy import ProxyServer, run_in_thread
from chaoskit.proxy._api import openapi

LOOPBACK = "127.0.0.1:0"
FUZZ = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


class Broken(logging.Handler):
    """Every log record with a traceback or at ERROR and above."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[ProxyServer]:
    """One server for the whole fuzz; afterwards it must still answer, and have logged no
    traceback."""
    broken = Broken()
    logging.getLogger().addHandler(broken)
    try:
        with run_in_thread(seed=7) as server:
            yield server
            with httpx.Client(base_url=server.url, timeout=5, trust_env=False) as client:
                assert client.get("/version").status_code == 200
                assert client.get("/proxies").status_code == 200
    finally:
        logging.getLogger().removeHandler(broken)
    assert not broken.records, [r.getMessage() for r in broken.records]


@pytest.fixture(scope="module")
def client(fuzzed: ProxyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed.url, timeout=10, trust_env=False) as http:
        yield http


def ensure_targets(client: httpx.Client) -> None:
    """Proxy ``p`` with toxic ``t`` exist, so generated paths can hit real resources."""
    if client.get("/proxies/p").status_code == 404:
        client.post("/proxies", json={"name": "p", "listen": LOOPBACK, "upstream": "x:1"})
    client.post("/proxies/p/toxics", json={"name": "t", "type": "latency"})


def pin_listen(value: Any) -> Any:
    """``value`` with every ``listen`` key (any case, any depth) set to loopback port 0."""
    if isinstance(value, dict):
        return {
            k: LOOPBACK if str(k).lower() == "listen" else pin_listen(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [pin_listen(item) for item in value]
    return value


schema = schemathesis.openapi.from_dict(openapi())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)


@schema.hook
def map_body(_context: schemathesis.HookContext, body: Any) -> Any:
    return pin_listen(body)


@schema.hook
def flatmap_path_parameters(
    _context: schemathesis.HookContext, parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Half the time, name the proxy and toxic that exist."""
    if not parameters:
        return st.just(parameters)
    known = {key: {"proxy": "p", "toxic": "t"}.get(key, value) for key, value in parameters.items()}
    return st.sampled_from([parameters, known])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@schema.parametrize()
@FUZZ
def test_schemathesis(case: schemathesis.Case, client: httpx.Client, fuzzed: ProxyServer) -> None:
    ensure_targets(client)
    case.call_and_validate(
        base_url=fuzzed.url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


# -- hostile requests beyond the description ---------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
fields = st.sampled_from(
    [
        "name",
        "upstream",
        "enabled",
        "type",
        "stream",
        "toxicity",
        "attributes",
        "ttl_ms",
        "initial_toxics",
        "latency",
        "jitter",
        "rate",
        "delay",
        "timeout",
        "average_size",
        "size_variation",
        "bytes",
    ]
)
objects = st.dictionaries(fields | st.text(max_size=8), json_values, max_size=6)


depths = st.sampled_from([99, 100, 101, 1000, 100_000]) | st.integers(1, 5000)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: json.dumps(pin_listen(v)).encode(), objects),
    st.builds(lambda v: json.dumps(pin_listen(v)).encode(), st.lists(objects, max_size=3)),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    depths.map(nested),
    depths.map(lambda n: b"[" * n + b"]" * n),
    depths.map(lambda n: b"[" * n),
    st.sampled_from([b"NaN", b"1e400", b"-0", b"1" + b"0" * 5000, b'"\\ud800"', b"\xff\xfe"]),
    st.builds(
        lambda n: b'{"type": "latency", "attributes": {"latency": ' + n + b"}}",
        st.sampled_from([b"1e400", b"1.5", b"-1", b"9" * 30, b'"1"', b"null"]),
    ),
)
segments = st.one_of(
    st.sampled_from(["p", "t", "toxics", "lease", ".", "..", "%2e%2E", "%2F", "%00", "%ff", "%"]),
    st.text(max_size=12).map(lambda text: quote(text, safe="")),
)
templates = st.sampled_from(
    [
        "/proxies/{}",
        "/proxies/{}/toxics",
        "/proxies/p/toxics/{}",
        "/proxies/{}/lease",
        "/{}",
        "/proxies/p/{}",
        "/populate",
        "/reset",
        "/version",
        "/proxies",
        "/metrics",
        "/openapi.json",
    ]
)
paths = st.builds(lambda template, segment: template.format(segment), templates, segments)
queries = st.one_of(st.just(""), st.text(max_size=10).map(lambda q: "?" + quote(q, safe="=&")))
methods = st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD"])
content_types = st.sampled_from(
    [None, b"application/json", b"text/plain", b"application/x-www-form-urlencoded", b"x/\xe9"]
)


READERS = "/proxies /populate /proxies/p /proxies/p/toxics /proxies/p/toxics/t /proxies/p/lease"
readers = st.sampled_from(READERS.split())
"""Paths whose POST (and PATCH, where routed) reads the body."""
Request = tuple[str, str, str, bytes, bytes | None]


def send(client: httpx.Client, request: Request) -> None:
    """Send one request; it must not be answered with a 5xx."""
    ensure_targets(client)
    method, path, query, body, content_type = request
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.request(method, path + query, content=body, headers=headers)
    assert response.status_code < 500, (method, path, body[:200], response.text[:300])


@settings(FUZZ, max_examples=100)
@given(
    request=st.tuples(st.sampled_from(["POST", "PATCH"]), readers, queries, bodies, content_types)
)
def test_hostile_bodies(client: httpx.Client, request: Request) -> None:
    send(client, request)


@settings(FUZZ, max_examples=100)
@given(request=st.tuples(methods, paths, queries, bodies, content_types))
def test_odd_requests(client: httpx.Client, request: Request) -> None:
    send(client, request)
