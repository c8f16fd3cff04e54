"""Probes of every kind against real endpoints, commands and modules; clear errors for probes
that cannot work; a sampler that reads on its interval."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from chaoskit.load import (
    ProbeConfigError,
    ProbeFailure,
    ProbeSampler,
    ProbeSeries,
    read_probe,
    reader_for,
)
from chaoskit.model.metrics import (
    CommandProbe,
    HttpProbe,
    ProbeMetric,
    PrometheusProbe,
    PythonProbe,
    ScrapeProbe,
)

from . import ThreadServer

AnyProbe = HttpProbe | PrometheusProbe | ScrapeProbe | CommandProbe | PythonProbe


def read(probe: AnyProbe) -> float:
    return asyncio.run(read_probe(probe))


def failure(probe: AnyProbe) -> str:
    with pytest.raises(ProbeFailure) as caught:
        read(probe)
    return str(caught.value)


def lasting(probe: AnyProbe) -> bool:
    """Whether the probe's failure is one no wait mends (a preflight refuses the run on it)."""
    with pytest.raises(ProbeFailure) as caught:
        read(probe)
    return caught.value.lasting


def _exposition() -> bytes:
    registry = CollectorRegistry()
    served = Counter("served", "Requests served", ["backend", "code"], registry=registry)
    served.labels("backend-1", "200").inc(5)
    served.labels("backend-2", "200").inc(7)
    served.labels("backend-2", "503").inc(2)
    Gauge("breaker_state", "0 closed, 1 open", registry=registry).set(1)
    return generate_latest(registry)


_PROMETHEUS: dict[str, dict[str, Any]] = {
    "up": {"resultType": "vector", "result": [{"metric": {"job": "x"}, "value": [1, "1"]}]},
    "scalar(42)": {"resultType": "scalar", "result": [1, "42"]},
    "up_all": {
        "resultType": "vector",
        "result": [{"metric": {"job": "a"}, "value": [1, "1"]}] * 2,
    },
    "absent_metric": {"resultType": "vector", "result": []},
    "up[5m]": {"resultType": "matrix", "result": []},
}


def probe_app() -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "200")))

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("delay", "5")))
        return web.Response(text="late")

    async def document(request: web.Request) -> web.Response:
        body = {"breakers": {"backend-1": {"failures": 3, "open": True}}, "items": [4, "x"]}
        return web.json_response(body)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="not json, not metrics {")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=_exposition(), content_type="text/plain")

    async def query(request: web.Request) -> web.Response:
        expression = request.query["query"]
        if expression in _PROMETHEUS:
            return web.json_response({"status": "success", "data": _PROMETHEUS[expression]})
        error = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
        return web.json_response(error, status=400)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/slow", slow)
    app.router.add_get("/document", document)
    app.router.add_get("/text", text)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/prometheus/api/v1/query", query)
    return app


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    with ThreadServer(probe_app()) as running:
        yield running


def http(url: str, **extra: object) -> HttpProbe:
    return HttpProbe.model_validate({"type": "http", "url": url, **extra})


def test_http_probe_reads_up_latency_and_json(server: ThreadServer) -> None:
    assert read(http(server.url("/health"))) == 1.0
    assert read(http(server.url("/health?status=503"))) == 0.0
    assert read(http(server.url("/health?status=503"), expect_status=[503])) == 1.0
    assert read(http("http://127.0.0.1:9/", timeout="500ms")) == 0.0  # refused: down
    assert read(http(server.url("/slow"), timeout="200ms")) == 0.0  # no answer: down
    latency = read(http(server.url("/slow?delay=0.1"), value="latency"))
    assert 0.09 <= latency < 1.0
    path = "breakers.backend-1.failures"
    assert read(http(server.url("/document"), value="json", json_path=path)) == 3.0
    assert read(http(server.url("/document"), value="json", json_path="items.0")) == 4.0
    opened = "breakers.backend-1.open"
    assert read(http(server.url("/document"), value="json", json_path=opened)) == 1.0


def test_http_probe_failures_say_what_was_wrong(server: ThreadServer) -> None:
    def json_at(path: str, url: str = "/document") -> HttpProbe:
        return http(server.url(url), value="json", json_path=path)

    assert "no key 'backend-9' (keys: backend-1)" in failure(json_at("breakers.backend-9.open"))
    assert "is str 'x', not a number" in failure(json_at("items.1"))
    assert "has only 2 items" in failure(json_at("items.5"))
    assert "did not answer JSON" in failure(json_at("a", url="/text"))
    assert "answered 503, expected 200" in failure(
        http(server.url("/health?status=503"), value="latency")
    )
    assert "cannot connect" in failure(http("http://127.0.0.1:9/", value="latency"))
    assert "within 0.2s" in failure(http(server.url("/slow"), value="latency", timeout="200ms"))


def prometheus(server: ThreadServer, query: str) -> PrometheusProbe:
    return PrometheusProbe.model_validate(
        {"type": "prometheus", "url": server.url("/prometheus/"), "query": query}
    )


def test_prometheus_probe_reads_one_sample(server: ThreadServer) -> None:
    assert read(prometheus(server, "up")) == 1.0
    assert read(prometheus(server, "scalar(42)")) == 42.0
    assert "returned 2 series" in failure(prometheus(server, "up_all"))
    assert "sum(...)" in failure(prometheus(server, "up_all"))
    assert "no series" in failure(prometheus(server, "absent_metric"))
    assert "matrix result" in failure(prometheus(server, "up[5m]"))
    refused = failure(prometheus(server, "up{"))
    assert "bad_data: parse error at char 3" in refused and "'up{'" in refused
    not_prometheus = PrometheusProbe.model_validate(
        {"type": "prometheus", "url": server.url("/text"), "query": "up"}
    )
    assert "without JSON: is it Prometheus?" in failure(not_prometheus)
    assert lasting(prometheus(server, "up{")) and lasting(prometheus(server, "up_all"))
    assert lasting(prometheus(server, "up[5m]"))
    assert not lasting(prometheus(server, "absent_metric"))  # it may appear with traffic
    assert not lasting(not_prometheus)


def scrape(server: ThreadServer, metric: str, **labels: str) -> ScrapeProbe:
    return ScrapeProbe.model_validate(
        {"type": "scrape", "url": server.url("/metrics"), "metric": metric, "labels": labels}
    )


def test_scrape_probe_sums_the_matching_samples(server: ThreadServer) -> None:
    assert read(scrape(server, "breaker_state")) == 1.0
    assert read(scrape(server, "served_total")) == 14.0
    assert read(scrape(server, "served_total", backend="backend-2")) == 9.0
    assert read(scrape(server, "served_total", backend="backend-2", code="503")) == 2.0
    assert "did you mean served_total" in failure(scrape(server, "served"))
    assert "no 'served_total' sample carries" in failure(scrape(server, "served_total", code="1"))
    broken = ScrapeProbe.model_validate(
        {"type": "scrape", "url": server.url("/text"), "metric": "x"}
    )
    assert "not Prometheus text format" in failure(broken) and lasting(broken)
    assert not lasting(scrape(server, "served"))
    missing = ScrapeProbe.model_validate(
        {"type": "scrape", "url": server.url("/nothing"), "metric": "x"}
    )
    assert "answered 404" in failure(missing)


def command(*argv: str, **extra: object) -> CommandProbe:
    return CommandProbe.model_validate({"type": "command", "command": list(argv), **extra})


def test_command_probe_reads_the_exit_code_or_stdout() -> None:
    python = sys.executable
    assert read(command(python, "-c", "raise SystemExit(3)")) == 3.0
    assert read(command(python, "-c", "print(' 2.5 ')", value="stdout")) == 2.5
    env_probe = command(
        python, "-c", "import os; print(os.environ['LAG'])", value="stdout", env={"LAG": "7"}
    )
    assert read(env_probe) == 7.0
    assert "is not a number: 'ready'" in failure(
        command(python, "-c", "print('ready')", value="stdout")
    )
    exited = failure(command(python, "-c", "import sys; sys.exit('broken pipe')", value="stdout"))
    assert "exited with 1: broken pipe" in exited


def test_a_command_that_overruns_its_timeout_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    script = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    began = time.monotonic()
    assert "within 0.5s" in failure(command(sys.executable, "-c", script, timeout="500ms"))
    assert time.monotonic() - began < 5
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_command_probe_that_cannot_run_is_refused_when_built() -> None:
    with pytest.raises(ProbeConfigError, match="'no-such-program-x' is not found on PATH"):
        reader_for(command("no-such-program-x", "--version"))
    with pytest.raises(ProbeConfigError, match="'/nonexistent/check' is not executable"):
        reader_for(command("/nonexistent/check"))
    with pytest.raises(ProbeConfigError, match=r"placeholder '\$\{ports.db\}'"):
        reader_for(command(sys.executable, "--port", "${ports.db}"))
    with pytest.raises(ValueError, match="not a shell string"):
        CommandProbe.model_validate({"type": "command", "command": "pg_isready -h 127.0.0.1"})


CHECKS = """
import asyncio

calls = 0

def replication_lag(scale=1):
    return 0.25 * scale

def healthy():
    return True

async def queue_depth():
    await asyncio.sleep(0)
    return 12

async def hangs():
    await asyncio.sleep(30)

def flaky():
    global calls
    calls += 1
    if calls % 2 == 0:
        raise ConnectionError("replica unreachable")
    return calls

def label():
    return "green"

not_a_function = 5
"""


@pytest.fixture
def checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of probe functions; its name."""
    name = f"probe_checks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CHECKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def python(spec: str, **extra: object) -> PythonProbe:
    return PythonProbe.model_validate({"type": "python", "callable": spec, **extra})


def test_python_probe_calls_the_function(checks: str) -> None:
    assert read(python(f"{checks}:replication_lag")) == 0.25
    assert read(python(f"{checks}:replication_lag", arguments={"scale": 4})) == 1.0
    assert read(python(f"{checks}:healthy")) == 1.0
    assert read(python(f"{checks}:queue_depth")) == 12.0
    assert read(python(f"{checks}:flaky")) == 1.0  # every second call raises
    assert "raised ConnectionError: replica unreachable" in failure(python(f"{checks}:flaky"))
    assert "returned is str 'green', not a number" in failure(python(f"{checks}:label"))
    assert "within 0.2s" in failure(python(f"{checks}:hangs", timeout="200ms"))


def test_a_python_probe_that_cannot_work_is_refused_when_built(checks: str) -> None:
    with pytest.raises(ProbeConfigError, match=r"cannot import 'no_such_module_x'.*PYTHONPATH"):
        reader_for(python("no_such_module_x:check"))
    with pytest.raises(ProbeConfigError, match="has no 'replication_lagg'; did you mean"):
        reader_for(python(f"{checks}:replication_lagg"))
    with pytest.raises(ProbeConfigError, match="'not_a_function' is a int, not a function"):
        reader_for(python(f"{checks}:not_a_function"))
    with pytest.raises(ProbeConfigError, match="the arguments do not fit"):
        reader_for(python(f"{checks}:healthy", arguments={"verbose": True}))


def test_the_sampler_reads_on_its_interval_and_keeps_errors(checks: str) -> None:
    sampler = ProbeSampler(python(f"{checks}:flaky"), 0.05, name="lag")

    async def scenario() -> ProbeSeries:
        return await sampler.run(0.5)

    series = asyncio.run(scenario())
    assert series.name == "lag"
    assert 9 <= len(series) <= 10
    offsets = series.time - series.time[0]
    assert np.allclose(offsets, np.arange(len(series)) * 0.05, atol=0.03)
    assert np.isnan(series.value[1::2]).all() and not np.isnan(series.value[::2]).any()
    assert set(series.errors) == set(range(1, len(series), 2))
    assert "replica unreachable" in series.errors[1]
    part = series.window(series.time[2], series.time[5])
    assert len(part) == 3 and set(part.errors) == {1}
    dump = json.loads(json.dumps(series.to_json(), allow_nan=False))
    assert dump["value"][1] is None and "replica unreachable" in dump["error"][1]
    assert dump["error"][0] is None and dump["value"][0] == 1.0


def test_a_sampler_stops_when_asked_and_follows_its_metric(checks: str) -> None:
    metric = ProbeMetric.model_validate(
        {
            "name": "lag",
            "of": "probe",
            "probe": {"type": "python", "callable": f"{checks}:replication_lag"},
            "interval": "20ms",
        }
    )
    sampler = ProbeSampler.for_metric(metric)
    assert sampler.interval == 0.02 and sampler.series.name == "lag"

    async def scenario() -> ProbeSeries:
        task = asyncio.create_task(sampler.run())
        while len(sampler.series) < 3:
            await asyncio.sleep(0.01)
        sampler.stop()
        return await asyncio.wait_for(task, 2)

    series = asyncio.run(scenario())
    assert len(series) >= 3 and np.all(series.value == 0.25)
    with pytest.raises(ValueError, match="interval"):
        ProbeSampler(metric.probe, 0)


def test_http_probes_refuse_unusable_urls() -> None:
    with pytest.raises(ProbeConfigError, match=r"placeholder '\$\{ports.frontend\}'"):
        reader_for(http("http://127.0.0.1:${ports.frontend}/health"))
    with pytest.raises(ProbeConfigError, match="http probe 'url' must be an http"):
        reader_for(http("file:///etc/passwd"))
    with pytest.raises(ProbeConfigError, match="empty part"):
        reader_for(http("http://127.0.0.1/", value="json", json_path="a..b"))
