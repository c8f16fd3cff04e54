"""Many targets at once: how long planning, checking, injecting and reverting take as the number
of faults grows, each fault journaled as a run journals it (``runner/lifecycle.py``), and how
long the three ways back from a journal take: ``rollback`` in a fresh event loop, the
``chaoskit rollback`` command, and the watchdog of a runner that is SIGKILLed.

Each row: N proxies on one ``chaoskit proxy`` server (a process of its own, as a run starts
it; a 1 ms latency toxic each), N/2 local ``sleep`` processes and N/5 containers of the stack
image running ``sleep`` (a pause each). Columns, in seconds and again in ms per fault:

  plan, check, inject  through ``FaultLifecycle``; injection one fault after another, as a
                       trial's schedule applies them
  revert               ``FaultLifecycle.revert``: all at once, each outcome journaled
  rollback             ``rollback`` from the journal alone, with fresh drivers
  chaoskit rollback    the command on the journal (a new interpreter, its start included)
                       after the runner process that applied the faults was SIGKILLed
  watchdog             a runner process applies the faults with its watchdog started as
                       ``chaoskit run`` starts it, and is SIGKILLed: from the kill until no
                       proxy has a toxic, no process is stopped and no container is paused

Target (issue 18): an experiment over 100 proxies, 50 processes and 20 containers reverts within
1 s; judged on that row for revert, rollback and the watchdog (the command also starts an
interpreter; the table says how long that takes).

Needs a Docker engine and the stack image (built here by ``chaoskit.stack.image.ensure_image``,
never pulled). Containers carry the label ``chaoskit.bench=<suffix>`` and are removed on every
exit, as are the processes it starts.

Each row is the median of ``--repeat`` rounds (default 3): the machine is shared, one round is
noisy.

Run:  python benchmarks/many_targets.py [--sizes 10,50,100] [--repeat 3] [--image TAG]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
from pydantic import TypeAdapter

from chaoskit.drivers.base import AppliedFault, Target
from chaoskit.drivers.process import process_target
from chaoskit.drivers.registry import Drivers
from chaoskit.drivers.toxiproxy import proxy_target
from chaoskit.model import Fault
from chaoskit.runner import watchdog
from chaoskit.runner.journal import Journal, read_journal
from chaoskit.runner.lifecycle import FaultLifecycle, could_not_revert
from chaoskit.runner.rollback import rollback
from chaoskit.stack.image import ensure_image

LATENCY = TypeAdapter(Fault).validate_python({"type": "latency", "target": "t", "latency": "1ms"})
PAUSE = TypeAdapter(Fault).validate_python({"type": "pause", "target": "t"})
TARGET_S = 1.0
TARGET_N = 100
"""The row the target is for: the issue's 100 proxies, 50 processes and 20 containers."""
WAIT_S = 30.0
"""How long a way back may take before the benchmark gives up on it."""

COLUMNS = {"plan": "plan", "check": "check", "inject": "inject", "revert": "revert",
           "rollback": "rollback", "cli": "chaoskit rollback", "watchdog": "watchdog"}  # fmt: skip
"""Each column's key and title."""
JUDGED = ("revert", "rollback", "watchdog")
"""The ways back the 1 s target applies to (the command adds an interpreter's start)."""

Spec = dict[str, Any]
"""One size's targets: the proxy API ``url``, ``proxies`` names, ``pids``, ``containers``
(name and id each)."""


def faults_of(spec: Spec) -> Iterator[tuple[Fault, Target]]:
    """Each target of ``spec`` with the fault it gets."""
    for name in spec["proxies"]:
        yield LATENCY, proxy_target(spec["url"], name)
    for pid in spec["pids"]:
        yield PAUSE, process_target(pid, f"sleep-{pid}")
    for name, ref in spec["containers"]:
        yield PAUSE, Target("container", name, {}, {"id": ref})


async def inject_all(
    faults: FaultLifecycle, spec: Spec
) -> tuple[list[AppliedFault], dict[str, float]]:
    """Plan, check and inject every fault of ``spec``; the records and each step's time."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    records = [faults.plan(fault, target) for fault, target in faults_of(spec)]
    times["plan"] = time.perf_counter() - start
    start = time.perf_counter()
    await faults.check(records)
    times["check"] = time.perf_counter() - start
    start = time.perf_counter()
    for record in records:
        await faults.inject(record)
    times["inject"] = time.perf_counter() - start
    return records, times


async def in_process(spec: Spec, folder: Path) -> dict[str, float]:
    """Plan, check, inject and revert; inject again and roll back from the journal."""
    journal = Journal.create(folder / "journal.jsonl", folder.name)
    faults = FaultLifecycle(Drivers(spec["url"]), journal)
    records, times = await inject_all(faults, spec)
    start = time.perf_counter()
    failed = could_not_revert(await faults.revert())
    times["revert"] = time.perf_counter() - start
    if failed:
        raise SystemExit(failed)
    # Again, and this time taken back from the journal alone, as a fresh process would.
    for record in records:
        await faults.inject(faults.plan(LATENCY if record.driver == "toxiproxy" else PAUSE,
                                        record.target))  # fmt: skip
    await faults.aclose()
    journal.release()
    start = time.perf_counter()
    done = await rollback(journal.path)
    times["rollback"] = time.perf_counter() - start
    if not done.ok or read_journal(journal.path).pending:
        raise SystemExit("rollback left something applied: " + "; ".join(done.lines()))
    times["faults"] = float(len(records))
    return times


async def runner(spec: Spec, path: Path, watched: bool) -> None:
    """A run's part of it: the journal, the watchdog (if ``watched``) started and renewed as
    ``chaoskit run`` does, every fault injected; then it waits to be killed."""
    journal = Journal.create(path, path.parent.name)
    renewing = None
    if watched:
        dog = watchdog.start(journal.path, timeout=watchdog.LEASE)
        renewing = asyncio.create_task(dog.keep_renewing())
    faults = FaultLifecycle(Drivers(spec["url"]), journal)
    await inject_all(faults, spec)
    print("applied", flush=True)
    await asyncio.to_thread(sys.stdin.buffer.read)  # until killed, or the benchmark is gone
    del renewing


class Reality:
    """What the targets themselves say, asked with as few calls as can be."""

    def __init__(self, spec: Spec, client: Any, label: str) -> None:
        self.spec = spec
        self.client = client
        self.label = label

    def toxics(self) -> int:
        """How many of the spec's proxies have a toxic."""
        proxies = httpx.get(f"{self.spec['url']}/proxies", trust_env=False).json()
        return sum(bool(proxies[name]["toxics"]) for name in self.spec["proxies"])

    def stopped(self) -> int:
        """How many of the spec's processes are stopped (state T)."""
        return sum(_state(pid) == "T" for pid in self.spec["pids"])

    def paused(self) -> int:
        """How many of the spec's containers are paused."""
        found = self.client.containers.list(filters={"label": self.label, "status": "paused"})
        names = {name for name, _ in self.spec["containers"]}
        return sum(c.name in names for c in found)

    def applied(self) -> int:
        """How many faults are in place."""
        return self.toxics() + self.stopped() + self.paused()

    def all_applied(self) -> bool:
        """Every fault is in place."""
        total = len(self.spec["proxies"]) + len(self.spec["pids"]) + len(self.spec["containers"])
        return self.applied() == total

    def none_applied(self) -> bool:
        """No fault is in place (the cheapest question first)."""
        return self.stopped() == 0 and self.paused() == 0 and self.toxics() == 0


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def wait_for(condition: Callable[[], bool], what: str, step: float = 0.005) -> None:
    """Poll ``condition`` until it holds; give up after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {WAIT_S:g}s waiting for {what}")
        time.sleep(step)


def start_runner(spec: Spec, path: Path, watched: bool) -> subprocess.Popen[str]:
    """This script as a runner process; returns once every fault is applied."""
    argv = [sys.executable, __file__, "--runner", json.dumps(spec), "--journal", str(path)]
    process = subprocess.Popen(
        [*argv, *(["--watched"] if watched else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "applied":
        kill(process)
        raise SystemExit(f"the runner process did not apply its faults (it said {line!r})")
    return process


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL ``process`` and reap it."""
    process.kill()
    process.wait()
    for pipe in (process.stdin, process.stdout):
        if pipe is not None:
            pipe.close()


def ways_back(spec: Spec, folder: Path, reality: Reality) -> dict[str, float]:
    """``chaoskit rollback`` after a SIGKILLed runner, then the watchdog of one."""
    times: dict[str, float] = {}
    path = folder / "cli" / "journal.jsonl"
    process = start_runner(spec, path, watched=False)
    kill(process)
    wait_for(reality.all_applied, "every fault to show")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit", "rollback", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    times["cli"] = time.perf_counter() - start
    if done.returncode != 0 or not reality.none_applied() or read_journal(path).pending:
        raise SystemExit(f"chaoskit rollback left something applied:\n{done.stdout}{done.stderr}")
    path = folder / "watchdog" / "journal.jsonl"
    process = start_runner(spec, path, watched=True)
    try:
        wait_for(reality.all_applied, "every fault to show")
        start = time.perf_counter()
    finally:
        kill(process)
    wait_for(reality.none_applied, "the watchdog to revert every fault")
    times["watchdog"] = time.perf_counter() - start
    wait_for(lambda: not read_journal(path).pending, "the watchdog to journal every revert")
    return times


@contextlib.contextmanager
def proxy_server(count: int) -> Iterator[str]:
    """``chaoskit proxy`` with ``count`` proxies p0, p1, …; its API URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "chaoskit", "proxy", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+", server.stdout.readline())
        if found is None:
            raise SystemExit("chaoskit proxy did not say where it listens")
        url = found.group(0)
        body = [{"name": f"p{i}", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:9"}
                for i in range(count)]  # fmt: skip
        httpx.post(f"{url}/populate", json=body, trust_env=False).raise_for_status()
        yield url
    finally:
        server.terminate()
        server.wait(10)
        if server.stdout is not None:
            server.stdout.close()


@contextlib.contextmanager
def containers(client: Any, image: str, count: int, label: str) -> Iterator[list[tuple[str, str]]]:
    """``count`` containers running ``sleep``; each removed afterwards, paused or not."""
    suffix = label.rpartition("=")[2]
    made: list[tuple[str, str]] = []
    try:
        for i in range(count):
            name = f"many-{suffix}-{i}"
            key, _, value = label.partition("=")
            container = client.containers.run(
                image, entrypoint=["sleep", "infinity"], name=name, labels={key: value},
                detach=True, network_mode="none",
            )  # fmt: skip
            made.append((name, container.id))
        yield made
    finally:
        for container in client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.APIError):
                if container.status == "paused":
                    container.unpause()
                container.remove(force=True)


@contextlib.contextmanager
def sleepers(count: int) -> Iterator[list[int]]:
    """``count`` ``sleep`` processes; resumed and killed afterwards."""
    made = [subprocess.Popen(["sleep", "600"]) for _ in range(count)]
    try:
        yield [process.pid for process in made]
    finally:
        for process in made:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100", help="proxies per row (N)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (median shown)")
    parser.add_argument("--image", help="container image (default: the stack image)")
    parser.add_argument("--runner", help=argparse.SUPPRESS)
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--watched", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runner:
        asyncio.run(runner(json.loads(args.runner), args.journal, args.watched))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too
    sizes = [int(n) for n in args.sizes.split(",")]
    biggest = max(sizes)
    client = docker.from_env()
    label = f"chaoskit.bench={secrets.token_hex(3)}"
    rows = []
    try:
        image = args.image or ensure_image(client, lambda line: print(line, file=sys.stderr))
        with (
            proxy_server(biggest) as url,
            sleepers(biggest // 2) as pids,
            containers(client, image, biggest // 5, label) as boxes,
            tempfile.TemporaryDirectory() as tmp,
        ):
            for n in sizes:
                spec = {"url": url, "proxies": [f"p{i}" for i in range(n)],
                        "pids": pids[: n // 2], "containers": boxes[: n // 5]}  # fmt: skip
                rounds = []
                for round_ in range(args.repeat):
                    folder = Path(tmp) / f"size-{n}-{round_}"
                    folder.mkdir()
                    times = asyncio.run(in_process(spec, folder / "run"))
                    times |= ways_back(spec, folder, Reality(spec, client, label))
                    rounds.append(times)
                rows.append((n, {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}))
    finally:
        client.close()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "chaoskit", "--help"], capture_output=True, check=True)
    startup = time.perf_counter() - start
    head = f"{'proxies':>7} {'procs':>5} {'ctrs':>4} {'faults':>6} " + " ".join(
        f"{name:>{max(len(name), 8)}}" for name in COLUMNS.values()
    )
    ok = True
    for unit, scale in (("seconds", None), ("ms per fault", 1000.0)):
        print(f"{unit}:\n{head}" + ("  target" if scale is None else ""))
        for n, t in rows:
            cells = " ".join(
                f"{t[key] * (scale / t['faults'] if scale else 1):>{max(len(name), 8)}.3f}"
                for key, name in COLUMNS.items()
            )
            line = f"{n:>7} {n // 2:>5} {n // 5:>4} {t['faults']:>6.0f} {cells}"
            if scale is None:
                met = max(t[k] for k in JUDGED) <= TARGET_S if n == TARGET_N else None
                ok &= met is not False
                line += "  " + ("-" if met is None else ("met" if met else "MISSED"))
            print(line)
    print(
        f"target (issue 18), for {TARGET_N} proxies, {TARGET_N // 2} processes and "
        f"{TARGET_N // 5} containers: {', '.join(JUDGED)} each within {TARGET_S:g} s, every "
        f"fault journaled; `chaoskit rollback` includes an interpreter's start "
        f"(`chaoskit --help` takes {startup:.2f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
