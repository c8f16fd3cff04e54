"""How fast the reference stack's frontend is back to normal after a backend returns.

Starts the real stack (process mode: frontend -> embedded Toxiproxy proxies -> 3 backends,
supervisor), drives open-loop GET /items at the frontend, takes backend-2 away for
``--outage`` seconds and watches the recovery. ``--fault kill`` SIGKILLs the backend and lets
the supervisor restart it (its backoff is set to the outage, so it is away that long plus its
start-up); ``--fault refuse`` disables its Toxiproxy proxy, then enables it again.

Per try it prints: the baseline p50/p99 and error rate, and the share of the baseline's own
1-second windows whose p50 is within 10 % of the baseline p50 (this machine's noise); how long
the backend was away and the error rate meanwhile; how long after its return the frontend's
1-second p50 is back within 10 % of the baseline p50 for 3 s in a row ("-" when the baseline
itself failed; "never" can be noise, so the worst 1-second p50 after the return is shown too);
the error rate over the first 10 s after the return; the largest bulkhead
``waiting`` seen on the frontend's /status (polled every 0.1 s); and how long one request sent
right after the load stopped took (a queue left behind shows there).

Latencies are the load generator's (open loop, from each request's due time); a request that
failed (5xx, timeout, refused) counts at the load timeout, so a fast 503 never reads as fast.

Run: python benchmarks/stack_recovery.py [--tries N] [--rate 200] [--fault kill|refuse]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaoskit.load import LoadGenerator, Samples  # noqa: E402
from chaoskit.model import Load  # noqa: E402
from chaoskit.stack.launcher import plan, run_stack  # noqa: E402

VICTIM = "backend-2"
WARMUP = 5.0
SLACK = 0.10
"""Recovered: the 1-second p50 is at most this much above the baseline p50."""
STAY = 3
"""... in this many consecutive 1-second windows."""
BASE_ERRORS = 0.01
"""A baseline with more errors than this is no steady state: recovery is not judged ("-")."""


@dataclass
class Try:
    """What one run found (seconds, shares)."""

    p50: float
    p99: float
    base_errors: float
    base_steady: float
    """Share of the baseline's own 1-second windows within 10 % of its p50 (the noise)."""
    outage_errors: float
    recovery: float
    worst_after: float
    """The highest 1-second p50 after the return."""
    after_errors: float
    max_waiting: int
    probe: float
    outage: float
    restarts: list[str]
    """Why the supervisor restarted the victim, each time."""
    timeline: list[tuple[float, float, float]]
    """(seconds since the return, 1-second p50, error share) per window after the fault."""


def second_p50s(window: Samples, start: float, end: float, ceiling: float) -> list[float]:
    """Censored p50 of each 1-second window of due times in ``[start, end)``."""
    found = []
    for left in np.arange(start, end - 1e-9, 1.0):
        part = window.between(float(left), float(left) + 1.0)
        found.append(float(np.median(part.censored_latencies(ceiling))) if len(part) else math.nan)
    return found


def error_share(window: Samples) -> float:
    return float(window.errors().mean()) if len(window) else math.nan


async def take_away(
    client: httpx.AsyncClient, *, fault: str, api: str, supervisor: str, backend: str, outage: float
) -> tuple[float, float]:
    """Take the victim away; return (when it went, when it was back), monotonic."""
    if fault == "refuse":
        went = time.monotonic()
        answer = await client.post(f"{api}/proxies/{VICTIM}", json={"enabled": False})
        answer.raise_for_status()
        await asyncio.sleep(outage)
        answer = await client.post(f"{api}/proxies/{VICTIM}", json={"enabled": True})
        answer.raise_for_status()
        return went, time.monotonic()
    replicas = (await client.get(f"{supervisor}/status")).json()["replicas"]
    pid = next(r["pid"] for r in replicas if r["name"] == VICTIM)
    went = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(outage * 0.9)
    while True:  # back: it answers ready again (the supervisor restarted it; it may be slow)
        try:
            if (await client.get(f"{backend}/health/ready", timeout=0.5)).status_code == 200:
                return went, time.monotonic()
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.02)


async def watch(client: httpx.AsyncClient, frontend: str, stop: asyncio.Event) -> int:
    """The largest bulkhead ``waiting`` seen on the frontend's /status until ``stop``."""
    worst = 0
    while not stop.is_set():
        try:
            status = (await client.get(f"{frontend}/status", timeout=1.0)).json()
            worst = max(worst, int(status["bulkhead"]["waiting"]))
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    return worst


async def one_try(args: argparse.Namespace) -> Try:
    data = Path(tempfile.mkdtemp(prefix="chaoskit-recovery-"))
    stack = plan(replicas=3, proxies=True, data_root=data)
    stack.backoff = (args.outage, args.outage, 600.0)  # kill: restarted after the outage
    with run_stack(stack):
        frontend = f"http://127.0.0.1:{stack.frontend}"
        api = f"http://127.0.0.1:{stack.toxiproxy}"
        supervisor = f"http://127.0.0.1:{stack.supervisor}"
        backend = f"http://127.0.0.1:{stack.backends[1]}"
        load = Load.model_validate(
            {"url": f"{frontend}/items", "rate": f"{args.rate}/s", "timeout": f"{args.timeout}s"}
        )
        generator = LoadGenerator(load)
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(client, frontend, stop))
            running = asyncio.create_task(generator.run())  # until stopped
            await asyncio.sleep(0)
            start = generator.start
            assert start is not None
            await asyncio.sleep(max(0.0, start + WARMUP + args.baseline - time.monotonic()))
            went, back = await take_away(
                client,
                fault=args.fault,
                api=api,
                supervisor=supervisor,
                backend=backend,
                outage=args.outage,
            )
            await asyncio.sleep(args.recovery)
            generator.stop()
            end = time.monotonic()
            samples = await running
            sent = time.monotonic()
            try:  # one request once the load has stopped: does a queue linger?
                await client.get(f"{frontend}/items", timeout=300.0)
                probe = time.monotonic() - sent
            except httpx.HTTPError:
                probe = math.inf
            stop.set()
            max_waiting = await watcher
            history = (await client.get(f"{supervisor}/history")).json()
            restarts = [e["cause"] for e in history if e["replica"] == VICTIM]
    ceiling = args.timeout
    everything = samples.window()
    base = everything.between(start + WARMUP, went).censored_latencies(ceiling)
    p50, p99 = float(np.percentile(base, 50)), float(np.percentile(base, 99))
    steady = [
        x <= p50 * (1 + SLACK) for x in second_p50s(everything, start + WARMUP, went, ceiling)
    ]
    after = second_p50s(everything, back, end, ceiling)
    good = [not math.isnan(x) and x <= p50 * (1 + SLACK) for x in after]
    recovery = math.inf
    base_errors = error_share(everything.between(start + WARMUP, went))
    if base_errors > BASE_ERRORS:
        recovery = math.nan  # no steady baseline to come back to
    for i in range(len(good) - STAY + 1 if math.isinf(recovery) else 0):
        if all(good[i : i + STAY]):
            recovery = float(i)
            break
    timeline = []
    for left, value in zip(
        np.arange(went, end - 1e-9, 1.0), second_p50s(everything, went, end, ceiling), strict=False
    ):
        part = everything.between(float(left), float(left) + 1.0)
        timeline.append((float(left) - back, value, error_share(part)))
    return Try(
        p50=p50,
        p99=p99,
        base_errors=base_errors,
        base_steady=sum(steady) / len(steady),
        outage_errors=error_share(everything.between(went, back)),
        recovery=recovery,
        worst_after=max(after, default=math.nan),
        after_errors=error_share(everything.between(back, back + 10.0)),
        max_waiting=max_waiting,
        probe=probe,
        outage=back - went,
        restarts=restarts,
        timeline=timeline,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def recovered(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return "never" if math.isinf(seconds) else f"{seconds:.0f}"


COLUMNS: list[tuple[str, Callable[[Try], str]]] = [
    ("p50 ms", lambda t: ms(t.p50)),
    ("p99 ms", lambda t: ms(t.p99)),
    ("err base", lambda t: f"{t.base_errors:.1%}"),
    ("base in 10%", lambda t: f"{t.base_steady:.0%}"),
    ("away s", lambda t: f"{t.outage:.1f}"),
    ("err away", lambda t: f"{t.outage_errors:.1%}"),
    ("back in s", lambda t: recovered(t.recovery)),
    ("worst p50 after ms", lambda t: ms(t.worst_after)),
    ("err 10 s after", lambda t: f"{t.after_errors:.1%}"),
    ("max waiting", lambda t: str(t.max_waiting)),
    ("probe after s", lambda t: f"{t.probe:.2f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=1)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--fault", choices=["kill", "refuse"], default="kill")
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds measured first")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the backend is away")
    parser.add_argument("--recovery", type=float, default=30.0, help="seconds watched after")
    parser.add_argument("--timeout", type=float, default=2.0, help="the load's timeout, s")
    parser.add_argument("--timeline", action="store_true", help="print each second too")
    args = parser.parse_args()
    print(
        f"{args.rate:g} req/s open loop at /items, {VICTIM} away ({args.fault}) for "
        f"{args.outage:g} s after {args.baseline:g} s of baseline; load timeout "
        f"{args.timeout:g} s (a failed request counts as that)"
    )
    print("try " + " ".join(f"{name:>{len(name)}}" for name, _ in COLUMNS) + "  load avg")
    for number in range(1, args.tries + 1):
        t = asyncio.run(one_try(args))
        cells = " ".join(f"{show(t):>{len(name)}}" for name, show in COLUMNS)
        print(f"{number:>3} {cells}  {os.getloadavg()[0]:>8.1f}", flush=True)
        if len(t.restarts) > 1:  # a restarted backend was killed again before it came up
            print(f"    restarts of {VICTIM}: {'; '.join(t.restarts)}")
        if args.timeline:
            for since, p50, errors in t.timeline:
                print(f"    {since:+6.1f} s  p50 {ms(p50):>7} ms  errors {errors:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
