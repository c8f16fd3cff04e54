"""The generator with several sending processes (``load.workers``), against real servers on
loopback: every request recorded once in due order with its latency from the due time, stop and
cancel as with one process, a dead worker reported, and no worker left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from pydantic import ValidationError
from waiting import wait_until

from chaoskit.load import ErrorClass, LoadGenerator, LoadWorkerError, send_figures
from chaoskit.model import Load

from . import ThreadServer
from .test_generator import Backend, load


def workers_of(pid: int) -> list[int]:
    """The load worker processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid"))
        if int(parent) == pid and b"chaoskit.load._worker" in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_every_request_is_recorded_once_in_due_order_with_latency_from_its_due_time() -> None:
    backend = Backend(stall_at=150, stall=0.5)  # request 150 is due 0.75 s in, at 200/s

    def group_of(tag: str | None) -> str | None:
        return {"backend-1": "experiment", "backend-2": "control"}.get(tag or "")

    with ThreadServer(backend.app) as server:
        spec = load(server.url("/ok"), "200/s", timeout="3s", workers=3, group_header="X-Backend")
        generator = LoadGenerator(spec, group_of=group_of)
        samples = asyncio.run(generator.run(2.0))
    window = samples.window()
    assert samples.pending == 0
    assert window.count(ErrorClass.NONE) == len(window) == backend.count == 400
    assert np.allclose(np.diff(window.due), 1 / 200)  # row i is request i, due start + i/rate
    assert generator.start is not None and window.due[0] == pytest.approx(generator.start)
    assert np.allclose(window.wall - window.wall[0], window.due - window.due[0], atol=1e-5)
    assert float(window.send_lag.min()) >= 0.0
    figures = send_figures(window)
    assert figures["requests"] == 400 and figures["overload"] == 0
    assert 0.0 <= figures["send_lag_p50"] <= figures["send_lag_p99"] <= figures["send_lag_max"]
    experiment, control = samples.window(group="experiment"), samples.window(group="control")
    assert len(experiment) + len(control) == 400 and min(len(experiment), len(control)) > 100
    # The server froze for 0.5 s: every request due meanwhile, whichever worker sent it, waited
    # for the end of the freeze, and its latency says so from its due time.
    assert backend.stalled is not None
    began, ended = backend.stalled
    during = (window.due > began + 0.01) & (window.due < ended - 0.05)
    assert during.sum() >= 70
    assert np.all(window.latency[during] >= ended - window.due[during] - 0.01)


def test_stop_sends_nothing_more_and_waits_for_the_requests_in_flight() -> None:
    seen: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/slow", slow)
    with ThreadServer(app) as server:
        generator = LoadGenerator(load(server.url("/slow"), "100/s", workers=2))

        async def scenario() -> None:
            task = asyncio.create_task(generator.run())
            while len(seen) < 30:
                await asyncio.sleep(0.01)
            generator.stop()
            await asyncio.wait_for(task, 30)

        asyncio.run(scenario())
        sent = len(seen)
        time.sleep(0.2)  # anything still sending would reach the server now
        assert len(seen) == sent
    window = generator.samples.window()
    assert generator.samples.pending == 0 and workers_of(os.getpid()) == []
    assert len(window) == sent  # each request sent is recorded, none more
    assert np.allclose(np.diff(window.due), 1 / 100)
    assert window.count(ErrorClass.NONE) == sent  # those in flight at the stop were waited for
    assert np.all(window.latency >= 0.3)


def test_cancelling_abandons_the_requests_in_flight_and_ends_the_workers() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:
        generator = LoadGenerator(load(server.url("/slow"), "100/s", timeout="5s", workers=2))

        async def scenario() -> list[int]:
            task = asyncio.create_task(generator.run())
            while generator.in_flight < 10:
                await asyncio.sleep(0.01)
            pids = workers_of(os.getpid())
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return pids

        pids = asyncio.run(scenario())
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)
    assert generator.samples.pending >= 10
    assert len(generator.samples) == 0 and len(generator.samples.window()) == 0


def test_a_killed_worker_fails_the_run_with_an_error_naming_it() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:
        generator = LoadGenerator(load(server.url("/ok"), "100/s", workers=2))

        async def scenario() -> None:
            task = asyncio.create_task(generator.run())
            while len(generator.samples) < 20:
                await asyncio.sleep(0.01)
            victim = workers_of(os.getpid())[0]
            os.kill(victim, signal.SIGKILL)
            with pytest.raises(LoadWorkerError, match=rf"\(pid {victim}\) was killed by SIGKILL"):
                await asyncio.wait_for(task, 30)  # an error, never a hang

        asyncio.run(scenario())
    assert workers_of(os.getpid()) == []
    assert len(generator.samples) >= 20  # what was recorded before stays


PARENT = """
import asyncio, os, sys
from chaoskit.load import LoadGenerator
from chaoskit.model import Load

async def main():
    spec = Load.model_validate({"url": sys.argv[1], "rate": "50/s", "workers": 2})
    generator = LoadGenerator(spec)
    task = asyncio.create_task(generator.run())
    while len(generator.samples) < 10:
        await asyncio.sleep(0.01)
    print("sending", flush=True)
    await task

asyncio.run(main())
"""


def test_workers_end_when_their_parent_dies() -> None:
    backend = Backend()
    with (
        ThreadServer(backend.app) as server,
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PARENT), server.url("/ok")],
            stdout=subprocess.PIPE,
            text=True,
        ) as parent,
    ):
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline().strip() == "sending"
            pids = workers_of(parent.pid)
            assert len(pids) == 2
            parent.kill()
            parent.wait()
            wait_until(lambda: not any(alive(p) for p in pids), 10, "the workers to end")
        finally:
            parent.kill()


def test_max_in_flight_is_shared_among_the_workers() -> None:
    backend = Backend()
    with ThreadServer(backend.app) as server:
        spec = load(server.url("/slow"), "100/s", timeout="300ms", max_in_flight=4, workers=2)
        samples = asyncio.run(LoadGenerator(spec).run(1.0))
    window = samples.window()
    assert len(window) == 100 and samples.pending == 0
    sent = window.error != ErrorClass.OVERLOAD
    assert np.all(window.error[sent] == ErrorClass.TIMEOUT)
    starts, ends = window.due[sent], (window.due + window.latency)[sent]
    assert max(int(np.sum((starts <= t) & (ends > t))) for t in starts) <= 4
    assert "max_in_flight" in samples.first_errors["overload"]
    assert send_figures(window)["overload"] == window.count(ErrorClass.OVERLOAD) > 0


def test_a_failing_group_callable_stops_a_multi_worker_run_with_its_error() -> None:
    def broken(tag: str | None) -> str | None:
        raise KeyError(tag)

    backend = Backend()
    with ThreadServer(backend.app) as server:
        spec = load(server.url("/ok"), "100/s", group_header="X-Backend", workers=2)

        async def scenario() -> None:
            with pytest.raises(KeyError):
                await asyncio.wait_for(LoadGenerator(spec, group_of=broken).run(), 30)

        asyncio.run(scenario())
    assert workers_of(os.getpid()) == []


def test_a_multi_worker_generator_stopped_before_it_runs_starts_no_process() -> None:
    generator = LoadGenerator(load("http://127.0.0.1:9/", "100/s", workers=2))
    generator.stop()
    samples = asyncio.run(asyncio.wait_for(generator.run(), 10))
    assert len(samples) == 0 and samples.pending == 0 and generator.start is None


def test_each_worker_needs_a_share_of_max_in_flight() -> None:
    with pytest.raises(ValidationError, match="must be at least 'workers'"):
        Load.model_validate({"url": "http://x/", "rate": "1/s", "workers": 4, "max_in_flight": 3})
    assert Load.model_validate({"url": "http://x/", "rate": "1/s"}).workers == 1
