"""Many targets at once: how long planning, checking, injecting and reverting take as the number
of faults grows, each fault journaled as a run journals it (``runner/lifecycle.py``), and how
long a fresh process takes to revert them all from the journal (``rollback``, as the watchdog
and ``chaoskit rollback`` do).

Each row: N proxies on one embedded proxy server (a 1 ms latency toxic each) and N/2 local
``sleep`` processes (a pause each). Injection is one fault after another, as a trial's
schedule applies them; reverting is all at once (each outcome journaled). Containers are not
in the table: they need the stack image and the engine, see ``benchmarks/drivers.py``.

Target (issue 18): reverting 100 applied faults within 1 s.

Run:  python benchmarks/many_targets.py [--sizes 10,50,100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import TypeAdapter

from chaoskit.drivers.base import AppliedFault
from chaoskit.drivers.process import process_target
from chaoskit.drivers.registry import Drivers
from chaoskit.drivers.toxiproxy import proxy_target
from chaoskit.model import Fault
from chaoskit.proxy import run_in_thread
from chaoskit.runner.journal import Journal, read_journal
from chaoskit.runner.lifecycle import FaultLifecycle, could_not_revert
from chaoskit.runner.rollback import rollback

LATENCY = TypeAdapter(Fault).validate_python({"type": "latency", "target": "t", "latency": "1ms"})
PAUSE = TypeAdapter(Fault).validate_python({"type": "pause", "target": "t"})
TARGET_S = 1.0


async def one_size(url: str, proxies: int, pids: list[int], folder: Path) -> dict[str, float]:
    """Plan, check, inject and revert ``proxies`` latency faults and a pause on each pid."""
    journal = Journal.create(folder / "journal.jsonl", folder.name)
    faults = FaultLifecycle(Drivers(url), journal)
    times: dict[str, float] = {}
    start = time.perf_counter()
    records: list[AppliedFault] = [
        faults.plan(LATENCY, proxy_target(url, f"p{i}")) for i in range(proxies)
    ]
    records += [faults.plan(PAUSE, process_target(pid, f"s{pid}")) for pid in pids]
    times["plan"] = time.perf_counter() - start
    start = time.perf_counter()
    await faults.check(records)
    times["check"] = time.perf_counter() - start
    start = time.perf_counter()
    for record in records:
        await faults.inject(record)
    times["inject"] = time.perf_counter() - start
    start = time.perf_counter()
    failed = could_not_revert(await faults.revert())
    times["revert"] = time.perf_counter() - start
    if failed:
        raise SystemExit(failed)
    # Again, and this time taken back from the journal alone, as a fresh process would.
    for record in records:
        fresh = faults.plan(LATENCY if record.driver == "toxiproxy" else PAUSE, record.target)
        await faults.inject(fresh)
    await faults.aclose()
    journal.release()
    start = time.perf_counter()
    done = await rollback(journal.path)
    times["rollback"] = time.perf_counter() - start
    if not done.ok or read_journal(journal.path).pending:
        raise SystemExit("rollback left something applied: " + "; ".join(done.lines()))
    times["faults"] = float(len(records))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100", help="proxies per row (N)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    biggest = max(sizes)
    sleepers = [subprocess.Popen(["sleep", "600"]) for _ in range(biggest // 2)]
    rows = []
    try:
        with run_in_thread() as server, tempfile.TemporaryDirectory() as tmp:
            for i in range(biggest):
                body = {"name": f"p{i}", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}
                httpx.post(f"{server.url}/proxies", json=body, trust_env=False).raise_for_status()
            for n in sizes:
                folder = Path(tmp) / f"run-{n}"
                folder.mkdir()
                pids = [s.pid for s in sleepers[: n // 2]]
                rows.append((n, asyncio.run(one_size(server.url, n, pids, folder))))
    finally:
        for process in sleepers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()
    print(
        f"{'proxies':>7} {'procs':>5} {'faults':>6} {'plan s':>7} {'check s':>7} "
        f"{'inject s':>8} {'revert s':>8} {'rollback s':>10} {'revert/fault ms':>15}  target"
    )
    ok = True
    for n, t in rows:
        met = t["revert"] <= TARGET_S if t["faults"] >= 100 else None
        ok &= met is not False
        verdict = "-" if met is None else ("met" if met else "MISSED")
        print(
            f"{n:>7} {n // 2:>5} {t['faults']:>6.0f} {t['plan']:>7.3f} {t['check']:>7.3f} "
            f"{t['inject']:>8.3f} {t['revert']:>8.3f} {t['rollback']:>10.3f} "
            f"{1000 * t['revert'] / t['faults']:>15.2f}  {verdict}"
        )
    print("target (issue 18): reverting 100 or more applied faults within 1 s, each journaled")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
