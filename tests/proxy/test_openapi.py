"""The published OpenAPI description matches the server: every route is described, and every
described operation answers a real request as described (status, content type, body schema)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import schemathesis
import yaml

from chaoskit.proxy import ProxyServer
from chaoskit.proxy._api import MAX_BODY, build_app, openapi
from chaoskit.proxy._collection import ProxyCollection
from chaoskit.proxy._metrics import Metrics

from .conftest import Upstream

METHODS = {"get", "post", "patch", "delete", "put"}


def test_every_route_is_described_and_nothing_else() -> None:
    app = build_app(ProxyCollection(random.Random(1)), Metrics(proxy=True, runtime=False))
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        method = "get" if route.method == "*" else route.method.lower()  # /metrics: any method
        served.add((method, path))
    described = {
        (method, path)
        for path, item in openapi()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert served == described


def test_the_description_is_valid_openapi_and_served(api: httpx.Client) -> None:
    schema = schemathesis.openapi.from_dict(openapi())
    assert len(list(schema.get_all_operations())) == 21
    assert api.get("/openapi.json").json() == openapi()
    yaml_answer = api.get("/openapi.yaml")
    assert yaml_answer.headers["content-type"] == "application/yaml"
    assert yaml.safe_load(yaml_answer.content) == openapi()


def test_every_operation_answers_as_described(
    api: httpx.Client, server: ProxyServer, upstream: Upstream
) -> None:
    """A walk through the whole API; each answer is checked against its description."""
    schema = schemathesis.openapi.from_dict(openapi())
    seen: set[tuple[str, str, int]] = set()

    def call(method: str, template: str, body: Any = None, **params: str) -> httpx.Response:
        path = template.format(**params)
        response = api.request(method, path, json=body)
        operation = schema[template][method]
        operation.validate_response(response)
        seen.add((method, template, response.status_code))
        return response

    new = {"name": "p", "listen": "127.0.0.1:0", "upstream": upstream.address}
    toxic = {"name": "t", "type": "latency", "attributes": {"latency": 10}}
    p, t = {"proxy": "p"}, {"proxy": "p", "toxic": "t"}
    assert call("GET", "/version").status_code == 200
    assert call("POST", "/proxies", new).status_code == 201
    assert call("POST", "/proxies", new).status_code == 409
    assert call("POST", "/proxies", {"name": "x"}).status_code == 400
    taken = {"name": "y", "listen": api.get("/proxies/p").json()["listen"], "upstream": "x:1"}
    assert call("POST", "/proxies", taken).status_code == 500
    assert call("POST", "/proxies", "x" * (MAX_BODY + 1)).status_code == 413
    assert call("GET", "/proxies").status_code == 200
    assert call("GET", "/proxies/{proxy}", **p).status_code == 200
    assert call("GET", "/proxies/{proxy}", proxy="nope").status_code == 404
    assert call("POST", "/proxies/{proxy}", {"enabled": False}, **p).status_code == 200
    assert call("PATCH", "/proxies/{proxy}", {"enabled": True}, **p).status_code == 200
    assert call("PATCH", "/proxies/{proxy}", {"listen": "nope"}, **p).status_code == 500
    assert call("PATCH", "/proxies/{proxy}", {"enabled": 1}, **p).status_code == 400
    assert call("POST", "/proxies/{proxy}/toxics", toxic, **p).status_code == 200
    assert call("POST", "/proxies/{proxy}/toxics", toxic, **p).status_code == 409
    assert call("POST", "/proxies/{proxy}/toxics", {"type": "x"}, **p).status_code == 400
    assert call("GET", "/proxies/{proxy}/toxics", **p).status_code == 200
    assert call("GET", "/proxies/{proxy}/toxics", proxy="nope").status_code == 404
    assert call("GET", "/proxies/{proxy}/toxics/{toxic}", **t).status_code == 200
    assert call("GET", "/proxies/{proxy}/toxics/{toxic}", proxy="p", toxic="no").status_code == 404
    update = {"attributes": {"latency": 20}, "toxicity": 0.5}
    assert call("POST", "/proxies/{proxy}/toxics/{toxic}", update, **t).status_code == 200
    assert call("PATCH", "/proxies/{proxy}/toxics/{toxic}", update, **t).status_code == 200
    bad = {"attributes": {"latency": -1}}
    assert call("PATCH", "/proxies/{proxy}/toxics/{toxic}", bad, **t).status_code == 400
    assert call("GET", "/proxies/{proxy}/lease", **p).status_code == 404
    assert call("POST", "/proxies/{proxy}/lease", {"ttl_ms": 60000}, **p).status_code == 200
    assert call("POST", "/proxies/{proxy}/lease", {"ttl_ms": 0}, **p).status_code == 400
    assert call("GET", "/proxies/{proxy}/lease", **p).status_code == 200
    assert call("DELETE", "/proxies/{proxy}/lease", **p).status_code == 204
    assert call("DELETE", "/proxies/{proxy}/lease", **p).status_code == 404
    assert call("DELETE", "/proxies/{proxy}/toxics/{toxic}", **t).status_code == 204
    assert call("DELETE", "/proxies/{proxy}/toxics/{toxic}", **t).status_code == 404
    assert call("POST", "/reset").status_code == 204
    assert call("POST", "/populate", [new, {**new, "name": "q"}]).status_code == 201
    assert call("POST", "/populate", []).status_code == 201
    assert call("POST", "/populate", [{"name": "z"}]).status_code == 400
    assert call("POST", "/populate", [{**taken, "name": "z", "listen": "nope"}]).status_code == 500
    assert call("DELETE", "/proxies/{proxy}", **p).status_code == 204
    assert call("DELETE", "/proxies/{proxy}", **p).status_code == 404
    assert call("GET", "/metrics").status_code == 404  # started without metrics
    assert call("GET", "/openapi.json").status_code == 200
    assert call("GET", "/openapi.yaml").status_code == 200
    operations = {(str(o.ok().method).upper(), o.ok().path) for o in schema.get_all_operations()}
    assert {(method, path) for method, path, _ in seen} == operations
