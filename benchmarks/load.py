"""The load generator against a trivial local HTTP server: the rate it holds, the CPU it takes,
its latency figures next to wrk's, and a coordinated-omission check.

Targets (issue 7): >= 2,000 requests/s with the generator in <= 1 core; p50 within 10 % of an
independent measurement (Debian's wrk, paced to the same rate with a randomised Lua delay()),
judged on a trivial server and on servers with 1 ms and 5 ms of work; the difference is also
printed in microseconds. When the server freezes for
1 s once, chaoskit's p99 must show it while a plain closed-loop measurement (each worker waits
for its answer, then sends the next) hides it. wrk 4 corrects its own figures for coordinated
omission, so its p99 shows the stall too.

Run: python benchmarks/load.py [SECONDS]   (wrk: apt-get install -y wrk)
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import aiohttp
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
sys.path.insert(0, str(ROOT))

from chaoskit.load import ErrorClass, LoadGenerator  # noqa: E402
from chaoskit.model import Load  # noqa: E402

SERVER = """
import asyncio, sys, time
from aiohttp import web

stall_at = None

async def ok(request):
    delay = float(request.query.get("delay", "0"))
    if delay:  # time.sleep in a thread: precise, where the loop's timers round to 1 ms
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, delay)
    return web.Response(text="ok")

async def arm(request):
    global stall_at
    stall_at = time.monotonic() + float(request.query["in"])
    return web.Response(text="armed")

async def stall(request):
    global stall_at
    if stall_at is not None and time.monotonic() >= stall_at:
        stall_at = None
        time.sleep(float(request.query.get("for", "1")))  # the whole server freezes
    return web.Response(text="ok")

async def main():
    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/arm", arm)
    app.router.add_get("/stall", stall)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

WRK_SCRIPT = """
-- pauses drawn around the mean keep the connections from sending in step (bursts)
local pause = tonumber(os.getenv("WRK_PAUSE_MS") or "0")
math.randomseed(os.time())
function delay() return math.random(math.floor(pause / 2), math.ceil(pause * 3 / 2)) end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"p50\\": %d, \\"p99\\": %d, \\"max\\": %d, \\"requests\\": %d, "
    .. "\\"duration\\": %d, \\"errors\\": %d}\\n",
    latency:percentile(50), latency:percentile(99), latency.max, summary.requests,
    summary.duration, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Figures:
    """What one measurement found: rate, CPU share, latency quantiles in seconds."""

    requests: int
    seconds: float
    cpu: float
    p50: float
    p99: float
    worst: float
    errors: int
    lag99: float = math.nan

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}"


def chaoskit(url: str, rate: float, seconds: float) -> Figures:
    """Open loop: latency from each request's due time."""
    generator = LoadGenerator(Load.model_validate({"url": url, "rate": f"{rate}/s"}))
    began_cpu, began = time.process_time(), time.monotonic()
    samples = asyncio.run(generator.run(seconds))
    wall = time.monotonic() - began
    cpu = (time.process_time() - began_cpu) / wall
    window = samples.window()
    answered = window.latencies()
    return Figures(
        requests=window.count(ErrorClass.NONE),
        seconds=seconds,
        cpu=cpu,
        p50=float(np.percentile(answered, 50)),
        p99=float(np.percentile(answered, 99)),
        worst=float(answered.max()),
        errors=int(window.errors().sum()),
        lag99=float(np.percentile(window.send_lag, 99)),
    )


def wrk(url: str, rate: float, seconds: float, connections: int, latency_guess: float) -> Figures:
    """Closed loop paced to about ``rate``: each connection waits for its answer, then pauses."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    pause = max(0.0, connections / rate - latency_guess) * 1000
    try:
        env = {**os.environ, "WRK_PAUSE_MS": str(pause)}
        command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", script.name, url]
        output = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    finally:
        os.unlink(script.name)
    line = next(x for x in output.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    return Figures(
        requests=result["requests"],
        seconds=result["duration"] / 1e6,
        cpu=math.nan,
        p50=result["p50"] / 1e6,
        p99=result["p99"] / 1e6,
        worst=result["max"] / 1e6,
        errors=result["errors"],
    )


def closed_loop(url: str, rate: float, seconds: float, workers: int = 10) -> Figures:
    """What a naive load test measures: each worker sends, waits for the answer, pauses, and
    times each request from when it actually left."""

    async def measure() -> list[float]:
        latencies: list[float] = []
        pause = workers / rate
        end = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:

            async def worker() -> None:
                while time.monotonic() < end:
                    began = time.monotonic()
                    async with session.get(url) as answer:
                        await answer.read()
                    latency = time.monotonic() - began
                    latencies.append(latency)
                    await asyncio.sleep(max(0.0, pause - latency))

            await asyncio.gather(*(worker() for _ in range(workers)))
        return latencies

    began_cpu, began = time.process_time(), time.monotonic()
    latencies = np.asarray(asyncio.run(measure()))
    wall = time.monotonic() - began
    return Figures(
        requests=latencies.size,
        seconds=wall,
        cpu=(time.process_time() - began_cpu) / wall,
        p50=float(np.percentile(latencies, 50)),
        p99=float(np.percentile(latencies, 99)),
        worst=float(latencies.max()),
        errors=0,
    )


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    server, base = start_server()
    ok = True
    try:
        chaoskit(base + "/", 500, 1.0)  # warm: imports, connections, the server's caches

        print(f"throughput ({seconds:g} s each; generator CPU = process time / wall time)")
        print(
            f"{'target/s':>9} {'achieved/s':>11} {'cpu':>5} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'lag p99 ms':>11} {'errors':>7} {'verdict':>8}"
        )
        for rate in (1000, 2000, 3000):
            f = chaoskit(base + "/", rate, seconds)
            good = f.rate >= 0.99 * rate and f.cpu <= 1.0 and f.errors == 0
            if rate == 2000:
                ok &= good
            print(
                f"{rate:>9} {f.rate:>11.0f} {f.cpu:>5.2f} {ms(f.p50):>7} {ms(f.p99):>7} "
                f"{ms(f.lag99):>11} {f.errors:>7} {'ok' if good else 'MISS':>8}"
            )

        have_wrk = shutil.which("wrk") is not None
        if not have_wrk:
            print("\nwrk not found (apt-get install -y wrk): comparisons skipped")
            return 1
        rate = 500
        print(
            f"\nlatency vs wrk at {rate}/s (wrk: 10 connections, paced by a random delay()); "
            f"median of {ROUNDS} interleaved rounds of {seconds / 2:g} s"
        )
        print(
            f"{'server':<14} {'chaoskit p50':>12} {'wrk p50':>8} {'diff':>7} {'diff us':>8} "
            f"{'chaoskit p99':>12} {'wrk p99':>8} {'wrk rate/s':>10} {'verdict':>8}"
        )
        for name, path in (
            ("no work", "/"),
            ("1 ms of work", "/?delay=0.001"),
            ("5 ms of work", "/?delay=0.005"),
        ):
            ours, theirs = [], []
            for _ in range(ROUNDS):
                ours.append(chaoskit(base + path, rate, seconds / 2))
                theirs.append(wrk(base + path, rate, seconds / 2, 10, ours[-1].p50))
            p50, wrk50 = median(f.p50 for f in ours), median(f.p50 for f in theirs)
            diff = p50 / wrk50 - 1
            good = abs(diff) <= 0.10
            ok &= good
            verdict = "ok" if good else "MISS"
            print(
                f"{name:<14} {ms(p50):>12} {ms(wrk50):>8} {diff:>+7.1%} "
                f"{(p50 - wrk50) * 1e6:>+8.0f} {ms(median(f.p99 for f in ours)):>12} "
                f"{ms(median(f.p99 for f in theirs)):>8} "
                f"{median(f.rate for f in theirs):>10.0f} {verdict:>8}"
            )

        print(
            f"\ncoordinated omission: the server freezes for 1 s once, {rate}/s for {seconds:g} s"
        )
        print(f"{'measurement':<30} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'requests':>9}")
        stall_url = base + "/stall?for=1"
        measurements = {
            "chaoskit (open loop)": lambda: chaoskit(stall_url, rate, seconds),
            "closed loop (10 workers)": lambda: closed_loop(stall_url, rate, seconds),
            "wrk (closed loop + CO fix)": lambda: wrk(stall_url, rate, seconds, 10, 0.0005),
        }
        found = {}
        for name, measure in measurements.items():
            httpx.get(f"{base}/arm?in={seconds / 3:g}", trust_env=False).raise_for_status()
            f = found[name] = measure()
            print(f"{name:<30} {ms(f.p50):>8} {ms(f.p99):>8} {ms(f.worst):>8} {f.requests:>9}")
        shows = found["chaoskit (open loop)"].p99 >= 0.5
        hides = found["closed loop (10 workers)"].p99 < 0.1
        ok &= shows and hides
        print(
            f"chaoskit's p99 shows the stall: {'yes' if shows else 'NO'}; "
            f"the closed loop's p99 hides it: {'yes' if hides else 'NO'} "
            "(wrk 4 corrects for coordinated omission itself, so it sees the stall too)"
        )
    finally:
        server.terminate()
        server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
