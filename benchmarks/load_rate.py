"""The load generator at high rates: the rate asked and the rate held, send lag, requests not
sent (overload), the generator's CPU, and its p50/p99 next to wrk's at rates both sustain.

Target (issue 18, item 4): one run holds 10,000 requests/s open loop on this 2-core machine
(with ``load.workers`` sending processes if one core is not enough), with its send lag p99
reported, and its p50 within 10 % of wrk's at a rate both sustain. Debian's wrk is closed loop:
it is paced as in benchmarks/load.py (10 connections, a random Lua delay() per request, in
whole milliseconds, so it holds only about the rate asked), and chaoskit is then run at the
rate wrk held. Paced so, wrk sends up to 10 requests at once and queues them at the server,
which a smooth open-loop schedule does not; so a last row runs wrk unpaced on one connection
(nothing ever queued: the bare round trip, at the highest rate one connection gets). Each round
runs both, one after the other, so they meet the same machine.

The system under test is one process of benchmarks/_trivial_server.py (a fixed keep-alive
answer; it answers wrk at ~47,000/s here). It shares the two cores with the generator and its
workers (or with wrk), and with whatever else the machine runs: the load average is printed.
Generator CPU is the parent's and its workers' CPU time over the run's wall time, in cores.

The two measure latency differently, so their p50s need not agree even where both are right:
wrk times from just before its write to just after its read, its own wake-up and read
included; chaoskit from the request's due time to the kernel's receive stamp on the answer
(its send lag and send path included, its read path not). ``--wire`` captures every round with
tcpdump on ``lo`` (benchmarks/_wire.py) and prints each tool's p50 beside the wire's p50 of its
own traffic: what each reports above the wire is its own share of the latency.

Run: python benchmarks/load_rate.py [SECONDS] [--wire]   (wrk: apt-get install -y wrk; about
100 s; --wire: tcpdump, as root)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _trivial_server import TrivialServer  # noqa: E402
from _wire import WireCapture, available  # noqa: E402
from load import wrk  # noqa: E402

from chaoskit.load import ErrorClass, LoadGenerator, send_figures  # noqa: E402
from chaoskit.model import Load  # noqa: E402

LADDER = [(1, 2_000), (1, 10_000), (2, 10_000), (2, 15_000)]
"""(workers, requests/s) of the rate table."""
COMPARED = [(2_000, 10), (5_000, 10), (10_000, 10), (math.inf, 1)]
"""(requests/s asked of wrk, its connections); chaoskit is compared at the rate wrk held. The
last row is wrk unpaced on one connection: closed loop with nothing queued at the server, so
its p50 is the bare round trip that a smooth open-loop schedule should also see, where the
paced rows send up to 10 requests at once."""
ROUNDS = 5
ROUND = 2
"""Seconds of each round of the comparison (wrk takes whole seconds)."""
TARGET = 10_000
T = TypeVar("T")


@dataclass
class Run:
    """One chaoskit run's figures (seconds, and cores for CPU)."""

    asked: float
    held: float
    overload: int
    errors: int
    lag50: float
    lag99: float
    p50: float
    p99: float
    cpu: float
    server_cpu: float

    @property
    def kept_up(self) -> bool:
        return self.held >= 0.99 * self.asked and self.overload == 0 and self.errors == 0


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def chaoskit(server: TrivialServer, rate: int, workers: int, seconds: float) -> Run:
    spec = Load.model_validate({"url": server.url("/"), "rate": f"{rate}/s", "workers": workers})
    generator = LoadGenerator(spec)
    cpu0, kids0, srv0 = time.process_time(), children_cpu(), server.cpu_seconds()
    began = time.monotonic()
    samples = asyncio.run(generator.run(seconds))
    wall = time.monotonic() - began  # workers' start-up included, in wall time and in CPU
    window = samples.window()
    figures = send_figures(window)
    answered = window.latencies()
    return Run(
        asked=rate,
        held=window.count(ErrorClass.NONE) / seconds,
        overload=figures["overload"],
        errors=int(window.errors().sum()) - figures["overload"],
        lag50=figures["send_lag_p50"],
        lag99=figures["send_lag_p99"],
        p50=float(np.percentile(answered, 50)),
        p99=float(np.percentile(answered, 99)),
        cpu=(time.process_time() - cpu0 + children_cpu() - kids0) / wall,
        server_cpu=(server.cpu_seconds() - srv0) / wall,
    )


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.3f}"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def wire_p50(port: int | None, measure: Callable[[], T]) -> tuple[T, float]:
    """``measure()``'s result and, with a port, the p50 of its round trips on the wire."""
    if port is None:
        return measure(), math.nan
    capture = WireCapture(port)
    with capture:
        result = measure()
    return result, float(np.percentile(capture.round_trips(), 50))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", nargs="?", type=float, default=5.0,
                        help="of each row of the rate table")  # fmt: skip
    parser.add_argument("--wire", action="store_true",
                        help="capture the comparison with tcpdump: the wire's p50s")  # fmt: skip
    arguments = parser.parse_args()
    seconds = arguments.seconds
    if arguments.wire and (why := available()):
        parser.error(f"--wire: {why}")
    ok = True
    print(f"machine: {os.cpu_count()} cores, load average {load_average()} at the start")
    print("server: 1 process of benchmarks/_trivial_server.py on 127.0.0.1, sharing the cores")
    with TrivialServer(workers=1) as server:
        chaoskit(server, 500, 1, 0.5)  # warm: imports, the server's first connections

        print(f"\nrate held ({seconds:g} s each; CPU in cores, workers' start-up included)")
        print(
            f"{'workers':>7} {'asked/s':>8} {'held/s':>8} {'overload':>8} {'lag p50 ms':>10} "
            f"{'lag p99 ms':>10} {'p50 ms':>7} {'p99 ms':>7} {'gen cpu':>7} {'srv cpu':>7} "
            f"{'verdict':>7}"
        )
        target_held = False
        for workers, rate in LADDER:
            r = chaoskit(server, rate, workers, seconds)
            if rate == TARGET:
                target_held |= r.kept_up
            print(
                f"{workers:>7} {rate:>8} {r.held:>8.0f} {r.overload:>8} {ms(r.lag50):>10} "
                f"{ms(r.lag99):>10} {ms(r.p50):>7} {ms(r.p99):>7} {r.cpu:>7.2f} "
                f"{r.server_cpu:>7.2f} {'ok' if r.kept_up else 'MISS':>7}"
            )
        ok &= target_held
        print(f"{TARGET}/s held open loop in one run: {'yes' if target_held else 'NO'}")

        if shutil.which("wrk") is None:
            print("\nwrk not found (apt-get install -y wrk): comparison skipped")
            return 1
        print(
            f"\np50 vs wrk at the same rate (median of {ROUNDS} rounds of {ROUND:g} s: wrk paced "
            "for the rate asked, or unpaced, then chaoskit at the rate wrk held, with a second "
            "worker above 10,000/s)"
        )
        wire = f" {'ck wire':>8} {'ck +us':>7} {'wrk wire':>8} {'wrk +us':>7}"
        wire = wire if arguments.wire else ""
        print(
            f"{'asked/s':>8} {'conns':>5} {'held/s':>7} {'chaoskit p50':>12} {'wrk p50':>8} "
            f"{'diff':>7} "
            f"{'diff us':>8} {'chaoskit p99':>12} {'wrk p99':>8} {'verdict':>8}{wire}"
        )
        port = server.port if arguments.wire else None
        within = False
        for rate, connections in COMPARED:
            ours, theirs, our_wire, their_wire = [], [], [], []
            for _ in range(ROUNDS):
                # each connection pauses connections/rate, less the ~0.1 ms of an answer
                figures, on_wire = wire_p50(
                    port, partial(wrk, server.url("/"), rate, ROUND, connections, 0.0001)
                )
                theirs.append(figures)
                their_wire.append(on_wire)
                held = round(theirs[-1].rate)
                run, on_wire = wire_p50(
                    port, partial(chaoskit, server, held, 1 if held <= TARGET else 2, ROUND)
                )
                ours.append(run)
                our_wire.append(on_wire)
            p50, wrk50 = median(r.p50 for r in ours), median(f.p50 for f in theirs)
            diff = p50 / wrk50 - 1
            both = all(r.kept_up for r in ours)
            verdict = ("ok" if abs(diff) <= 0.10 else "MISS") if both else "n/a"
            within |= verdict == "ok"
            print(
                f"{'unpaced' if math.isinf(rate) else rate:>8} {connections:>5} "
                f"{median(f.rate for f in theirs):>7.0f} {ms(p50):>12} {ms(wrk50):>8} "
                f"{diff:>+7.1%} {(p50 - wrk50) * 1e6:>+8.0f} {ms(median(r.p99 for r in ours)):>12} "
                f"{ms(median(f.p99 for f in theirs)):>8} {verdict:>8}"
                + (
                    f" {ms(median(our_wire)):>8} {(p50 - median(our_wire)) * 1e6:>+7.0f}"
                    f" {ms(median(their_wire)):>8} {(wrk50 - median(their_wire)) * 1e6:>+7.0f}"
                    if arguments.wire
                    else ""
                )
            )
        ok &= within
        print(f"p50 within 10 % of wrk's at a rate both sustain: {'yes' if within else 'NO'}")
    print(f"\nload average {load_average()} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
