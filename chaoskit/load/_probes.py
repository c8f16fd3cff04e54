"""Probe readers: one number from an HTTP endpoint, a Prometheus query, a ``/metrics`` page,
a command or a Python function, each bounded by the probe's timeout.

A reader is built from the model's probe (problems that no retry can fix raise
:class:`ProbeConfigError` then); each :meth:`ProbeReader.read` returns a number or raises
:class:`ProbeFailure` with a message fit for the sample's error.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import inspect
import math
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..model.metrics import (
    CommandProbe,
    HttpProbe,
    PrometheusProbe,
    PythonProbe,
    ReplicasProbe,
    ScrapeProbe,
)
from ._errors import ProbeConfigError, ProbeFailure, refuse_placeholders

__all__ = ["ProbeReader", "read_probe", "reader_for"]

AnyProbe = HttpProbe | PrometheusProbe | ScrapeProbe | CommandProbe | PythonProbe | ReplicasProbe


class ProbeReader(ABC):
    """Reads one number from a probe."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def read(self) -> float:
        """One reading; :class:`ProbeFailure` when there is none within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                value = await self._read()
        except TimeoutError:
            value = self._timed_out()
        if math.isnan(value):
            raise ProbeFailure("the value is NaN")
        return value

    async def aclose(self) -> None:  # noqa: B027 - most readers hold nothing
        """Release what the reader holds (an HTTP client)."""

    def _timed_out(self) -> float:
        """The reading when the timeout passed first; by default there is none."""
        raise ProbeFailure(f"no reading within {self.timeout:g}s (the probe's timeout)")

    @abstractmethod
    async def _read(self) -> float: ...


def reader_for(probe: AnyProbe) -> ProbeReader:
    """The reader of ``probe``; :class:`ProbeConfigError` when it can never work as written."""
    if isinstance(probe, HttpProbe):
        return _HttpReader(probe)
    if isinstance(probe, PrometheusProbe):
        return _PrometheusReader(probe)
    if isinstance(probe, ScrapeProbe):
        return _ScrapeReader(probe)
    if isinstance(probe, CommandProbe):
        return _CommandReader(probe)
    if isinstance(probe, PythonProbe):
        return _PythonReader(probe)
    make = getattr(probe, "reader", None)  # a probe type a plugin adds makes its own reader
    reader = make() if callable(make) else None
    if isinstance(reader, ProbeReader):
        return reader
    if isinstance(probe, ReplicasProbe):  # the runner binds it to an engine, then it has one
        raise ProbeConfigError("a replicas probe is read through the engines of a run")
    raise ProbeConfigError(
        f"the {getattr(probe, 'type', '?')} probe gave no reader: its reader() must return a "
        "chaoskit.load.ProbeReader"
    )


async def read_probe(probe: AnyProbe) -> float:
    """Read ``probe`` once (e.g. in a preflight check); raises like :meth:`ProbeReader.read`."""
    reader = reader_for(probe)
    try:
        return await reader.read()
    finally:
        await reader.aclose()


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    raise ProbeFailure(f"{what} is {type(value).__name__} {value!r}, not a number")


def _http_url(url: str, kind: str) -> str:
    refuse_placeholders(url, f"{kind} probe 'url'", ProbeConfigError)
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ProbeConfigError(f"{kind} probe 'url' must be an http(s) URL with a host: '{url}'")
    return url


def _transport_failure(exc: httpx.HTTPError, url: str) -> ProbeFailure:
    if isinstance(exc, httpx.TimeoutException):
        return ProbeFailure(f"timed out asking {url}")
    if isinstance(exc, httpx.ConnectError):
        return ProbeFailure(f"cannot connect to {url}: {exc}")
    return ProbeFailure(f"{type(exc).__name__} asking {url}: {exc}")


class _HttpClientReader(ProbeReader):
    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _HttpReader(_HttpClientReader):
    """``up``: 1 for an expected status, else 0 (no answer too); ``latency``: seconds;
    ``json``: the number at ``json_path``."""

    def __init__(self, probe: HttpProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.probe = probe
        self.url = _http_url(probe.url, "http")
        self._path = _json_path(probe.json_path) if probe.json_path is not None else []

    def _timed_out(self) -> float:
        if self.probe.value == "up":
            return 0.0
        return super()._timed_out()

    async def _read(self) -> float:
        p = self.probe
        began = time.perf_counter()
        try:
            answer = await self.client.request(
                p.method, self.url, headers=p.headers, content=p.body
            )
        except httpx.HTTPError as exc:
            if p.value == "up":
                return 0.0
            raise _transport_failure(exc, self.url) from None
        elapsed = time.perf_counter() - began
        expected = answer.status_code in p.expect_status
        if p.value == "up":
            return 1.0 if expected else 0.0
        if not expected:
            wanted = ", ".join(map(str, p.expect_status))
            raise ProbeFailure(f"{self.url} answered {answer.status_code}, expected {wanted}")
        if p.value == "latency":
            return elapsed
        try:
            document = answer.json()
        except ValueError:
            raise ProbeFailure(f"{self.url} did not answer JSON") from None
        return _number(_follow(document, self._path, p.json_path or ""), f"'{p.json_path}'")


def _json_path(path: str) -> list[str]:
    parts = path.split(".")
    if not all(parts):
        raise ProbeConfigError(f"http probe 'json_path' has an empty part: '{path}'")
    return parts


def _follow(document: object, parts: list[str], path: str) -> object:
    node = document
    for depth, key in enumerate(parts):
        here = ".".join(parts[:depth]) or "the document"
        if isinstance(node, Mapping):
            if key not in node:
                keys = ", ".join(map(str, list(node)[:10])) or "none"
                raise ProbeFailure(f"'{path}': {here} has no key '{key}' (keys: {keys})")
            node = node[key]
        elif isinstance(node, list) and key.lstrip("-").isdigit():
            try:
                node = node[int(key)]
            except IndexError:
                raise ProbeFailure(f"'{path}': {here} has only {len(node)} items") from None
        else:
            raise ProbeFailure(f"'{path}': {here} is {type(node).__name__}, cannot take '{key}'")
    return node


class _PrometheusReader(_HttpClientReader):
    """An instant query through the Prometheus HTTP API (``/api/v1/query``)."""

    def __init__(self, probe: PrometheusProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.probe = probe
        self.url = _http_url(probe.url, "prometheus").rstrip("/") + "/api/v1/query"

    async def _read(self) -> float:
        try:
            answer = await self.client.get(self.url, params={"query": self.probe.query})
        except httpx.HTTPError as exc:
            raise _transport_failure(exc, self.url) from None
        try:
            body = answer.json()
        except ValueError:
            raise ProbeFailure(
                f"{self.url} answered {answer.status_code} without JSON: is it Prometheus?"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", body) if isinstance(body, dict) else body
            kind = body.get("errorType", "error") if isinstance(body, dict) else "error"
            raise ProbeFailure(
                f"Prometheus refused '{self.probe.query}': {kind}: {detail}",
                lasting=kind == "bad_data",  # the query itself is wrong
            )
        data = body.get("data") or {}
        result = data.get("result")
        kind = data.get("resultType")
        if kind == "scalar" and isinstance(result, list) and len(result) == 2:
            return _prometheus_float(result[1])
        if kind != "vector" or not isinstance(result, list):
            raise ProbeFailure(
                f"'{self.probe.query}' gave a {kind} result: write an instant query that "
                "yields one sample",
                lasting=True,
            )
        if not result:
            raise ProbeFailure(f"'{self.probe.query}' returned no series (no data yet?)")
        if len(result) > 1:
            shown = ", ".join(str(r.get("metric", {})) for r in result[:3])
            raise ProbeFailure(
                f"'{self.probe.query}' returned {len(result)} series ({shown}, ...): "
                "aggregate them to one, e.g. sum(...) or max(...)",
                lasting=True,
            )
        return _prometheus_float(result[0].get("value", [None, None])[1])


def _prometheus_float(text: object) -> float:
    try:
        return float(str(text))
    except ValueError:
        raise ProbeFailure(f"Prometheus sent {text!r}, not a number") from None


class _ScrapeReader(_HttpClientReader):
    """The sum of the samples named ``metric`` that carry ``labels``, from a text exposition."""

    def __init__(self, probe: ScrapeProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.probe = probe
        self.url = _http_url(probe.url, "scrape")

    async def _read(self) -> float:
        try:
            answer = await self.client.get(self.url)
        except httpx.HTTPError as exc:
            raise _transport_failure(exc, self.url) from None
        if answer.status_code != 200:
            raise ProbeFailure(f"{self.url} answered {answer.status_code}")
        wanted = self.probe.labels
        total = 0.0
        matched = 0
        names: set[str] = set()
        try:
            for family in text_string_to_metric_families(answer.text):
                for sample in family.samples:
                    names.add(sample.name)
                    if sample.name == self.probe.metric and all(
                        sample.labels.get(k) == v for k, v in wanted.items()
                    ):
                        total += sample.value
                        matched += 1
        except ValueError as exc:
            raise ProbeFailure(
                f"{self.url} is not Prometheus text format: {exc}", lasting=True
            ) from None
        if not matched:
            raise ProbeFailure(self._missing(names))
        return total

    def _missing(self, names: set[str]) -> str:
        metric, labels = self.probe.metric, self.probe.labels
        if metric in names:
            return f"{self.url}: no '{metric}' sample carries the labels {labels}"
        close = difflib.get_close_matches(metric, sorted(names), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{self.url} has no sample named '{metric}'{hint}"


class _CommandReader(ProbeReader):
    """Runs the argv list (never through a shell); the exit code, or stdout as a number."""

    def __init__(self, probe: CommandProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.probe = probe
        for i, arg in enumerate(probe.command):
            refuse_placeholders(arg, f"command probe argument {i}", ProbeConfigError)
        for key, text in probe.env.items():
            refuse_placeholders(text, f"command probe env '{key}'", ProbeConfigError)
        self.env = {**os.environ, **probe.env}
        program = probe.command[0]
        found = shutil.which(program, path=self.env.get("PATH"))
        if found is None:
            where = "is not executable" if os.path.sep in program else "is not found on PATH"
            raise ProbeConfigError(f"command probe: program '{program}' {where}")
        self.argv = [found, *probe.command[1:]]

    async def _read(self) -> float:
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            out, err = await process.communicate()
        finally:
            if process.returncode is None:  # timed out or cancelled: leave nothing running
                process.kill()
                await process.wait()
        code = await process.wait()  # done already: its exit code
        if self.probe.value == "exit_code":
            return float(code)
        if code != 0:
            tail = err.decode(errors="replace").strip()[-200:]
            raise ProbeFailure(f"'{self.probe.command[0]}' exited with {code}: {tail}")
        text = out.decode(errors="replace").strip()
        try:
            return float(text)
        except ValueError:
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise ProbeFailure(
                f"the output of '{self.probe.command[0]}' is not a number: {shown!r}"
            ) from None


class _PythonReader(ProbeReader):
    """Calls ``module:function`` with the probe's arguments; a coroutine function is awaited,
    a plain one runs in a worker thread (left running if it overruns the timeout)."""

    def __init__(self, probe: PythonProbe) -> None:
        super().__init__(probe.timeout.seconds)
        self.probe = probe
        self.function = _import_callable(probe.callable, probe.arguments)

    async def _read(self) -> float:
        kwargs = self.probe.arguments
        try:
            if inspect.iscoroutinefunction(self.function):
                value = await self.function(**kwargs)
            else:
                value = await asyncio.to_thread(self.function, **kwargs)
        except Exception as exc:
            raise ProbeFailure(
                f"{self.probe.callable} raised {type(exc).__name__}: {exc}"
            ) from None
        return _number(value, f"what {self.probe.callable} returned")


def _import_callable(spec: str, arguments: Mapping[str, Any]) -> Callable[..., Any]:
    module_name, _, name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProbeConfigError(
            f"python probe '{spec}': cannot import '{module_name}' ({exc}); is it installed "
            "or on PYTHONPATH?"
        ) from None
    except Exception as exc:
        raise ProbeConfigError(
            f"python probe '{spec}': importing '{module_name}' raised {type(exc).__name__}: {exc}"
        ) from None
    function = getattr(module, name, None)
    if function is None:
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        close = difflib.get_close_matches(name, public, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ProbeConfigError(f"python probe '{spec}': '{module_name}' has no '{name}'{hint}")
    if not callable(function):
        raise ProbeConfigError(
            f"python probe '{spec}': '{name}' is a {type(function).__name__}, not a function"
        )
    try:
        inspect.signature(function).bind(**arguments)
    except TypeError as exc:
        raise ProbeConfigError(f"python probe '{spec}': the arguments do not fit: {exc}") from None
    except ValueError:  # no signature to check (some builtins)
        pass
    return function  # type: ignore[no-any-return]
