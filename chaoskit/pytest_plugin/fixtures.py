"""Fixtures that break things inside ordinary tests and always take them back: ``chaos_proxy``,
``toxiproxy``, ``chaos_journal`` and ``chaos``. Each fault goes through the runner's one fault
lifecycle (``runner/lifecycle.py``): journaled before it is applied, and a watchdog reverts
what is left if pytest itself is killed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .options import report_dir

if TYPE_CHECKING:
    from ..drivers.base import AppliedFault, Target
    from ..drivers.toxiproxy import ToxiproxyDriver
    from ..proxy import ProxyServer
    from ..runner.journal import Journal
    from ..runner.lifecycle import FaultLifecycle
    from ..runner.watchdog import Watchdog

__all__ = ["Chaos", "ChaosJournal", "chaos", "chaos_journal", "chaos_proxy", "toxiproxy"]

_T = TypeVar("_T")


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to completion, also from inside a running event loop (async tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _patience(given: float | None) -> float:
    """``given``, or the runner's revert patience (imported only when a fault is made)."""
    from ..runner.rollback import REVERT_PATIENCE  # noqa: PLC0415

    return REVERT_PATIENCE if given is None else given


class ChaosJournal:
    """The write-ahead journal of the ``chaos`` fixtures and the watchdog that reverts what
    it says is applied if pytest dies. Both start with the first fault, so a session that
    injects nothing costs nothing. ``reports`` is the folder the journal goes in, or a function
    that makes it, called with the first fault; ``revert_patience`` is how long the watchdog's
    reverts keep trying a backend that does not answer (by default the runner's 30 s)."""

    LEASE = 30.0
    """Seconds without a renewal before the watchdog takes pytest for hung (a renewal thread
    keeps it alive while a test blocks or sits in a debugger; death is seen at once)."""

    def __init__(
        self, reports: Path | Callable[[], Path], *, revert_patience: float | None = None
    ) -> None:
        self._reports = reports
        self._patience = revert_patience
        self._journal: Journal | None = None
        self._dog: Watchdog | None = None
        self._stop = threading.Event()
        self._renewing: threading.Thread | None = None
        self._lock = threading.Lock()

    def journal(self) -> Journal:
        """The session's journal, with its watchdog started the first time."""
        from ..runner import watchdog  # noqa: PLC0415
        from ..runner.journal import Journal  # noqa: PLC0415

        with self._lock:
            if self._journal is None:
                run = f"pytest-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
                journal = Journal.create(self.reports / run / "journal.jsonl", run)
                self._dog = dog = watchdog.start(
                    journal.path, timeout=self.LEASE, patience=_patience(self._patience)
                )
                self._renewing = threading.Thread(
                    target=self._renew, args=(dog,), name="chaos-lease", daemon=True
                )
                self._renewing.start()
                self._journal = journal
            return self._journal

    @property
    def reports(self) -> Path:
        """The folder the journal is (or will be) in."""
        if callable(self._reports):
            self._reports = self._reports()
        return self._reports

    def _renew(self, dog: Watchdog) -> None:
        while not self._stop.is_set():
            dog.renew()
            self._stop.wait(dog.timeout / 4)

    def close(self) -> None:
        """End the session: the journal is marked finished when nothing is left applied, and
        the watchdog reverts whatever is (it never is, unless a revert failed)."""
        if self._journal is None or self._dog is None:
            return
        self._stop.set()
        if self._renewing is not None:
            self._renewing.join()
        from ..runner.journal import read_journal  # noqa: PLC0415

        if read_journal(self._journal.path).pending:
            self._journal.release()  # left open: the watchdog reverts it, or rollback will
        else:
            self._journal.close()
        self._dog.finish()


class Chaos:
    """Faults as context managers that always revert, on a Toxiproxy API (``url``), the
    Docker engine (containers by name) and local processes (by pid). With ``journal``, each
    fault is journaled before it is applied and its revert after. A revert keeps trying a
    backend that does not answer for ``revert_patience`` seconds (by default the runner's 30 s)
    before the test fails."""

    def __init__(
        self,
        url: str,
        journal: ChaosJournal | None = None,
        *,
        revert_patience: float | None = None,
    ) -> None:
        self.url = url
        self._journal = journal
        self._patience = revert_patience
        self._faults: FaultLifecycle | None = None

    def proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> str:
        """Create (or replace) proxy ``name`` relaying to ``upstream``; where it listens."""
        from ..drivers.toxiproxy import ToxiproxyClient, ToxiproxyError  # noqa: PLC0415

        async def create() -> str:
            async with ToxiproxyClient(self.url) as client:
                with contextlib.suppress(ToxiproxyError):
                    await client.delete_proxy(name)
                return (await client.create_proxy(name, upstream, listen)).listen

        return _run(create())

    # -- network faults on a proxy ----------------------------------------------------------

    def latency(
        self, proxy: str, latency: str, jitter: str = "0ms"
    ) -> contextlib.AbstractContextManager[AppliedFault]:
        """Delay what ``proxy`` relays by ``latency`` (± ``jitter``)."""
        return self.fault("latency", proxy, latency=latency, jitter=jitter)

    def partition(
        self, proxy: str, mode: str = "hang"
    ) -> contextlib.AbstractContextManager[AppliedFault]:
        """Cut ``proxy``: connections hang (``hang``) or are refused (``refuse``)."""
        return self.fault("partition", proxy, mode=mode)

    def bandwidth(self, proxy: str, rate: str) -> contextlib.AbstractContextManager[AppliedFault]:
        """Limit what ``proxy`` relays to ``rate`` (e.g. ``100kB/s``)."""
        return self.fault("bandwidth", proxy, rate=rate)

    # -- process and container faults --------------------------------------------------------

    def crash(
        self, container: str | None = None, *, pid: int | None = None, **attributes: Any
    ) -> contextlib.AbstractContextManager[AppliedFault]:
        """Crash a container by name (restarted on the way out if it stayed down) or a
        process by pid (``signal``, default SIGKILL; ``action`` for containers)."""
        return self.fault("crash", container, pid=pid, **attributes)

    def pause(
        self, container: str | None = None, *, pid: int | None = None
    ) -> contextlib.AbstractContextManager[AppliedFault]:
        """Freeze a container by name or a process by pid; resumed on the way out."""
        return self.fault("pause", container, pid=pid)

    @contextlib.contextmanager
    def fault(
        self,
        type: str,
        target: str | Target | None = None,
        *,
        pid: int | None = None,
        **attributes: Any,
    ) -> Iterator[AppliedFault]:
        """Any fault an experiment file's ``faults`` entry can say (``type`` and its
        attributes). ``target`` is a proxy on this server's API for a fault applied on a proxy
        (a toxic, or a partition that hangs or refuses), else a container by name; ``pid=``
        is a local process."""
        from pydantic import TypeAdapter  # noqa: PLC0415

        from ..drivers.base import DriverError, Target  # noqa: PLC0415
        from ..model import Fault  # noqa: PLC0415
        from ..runner.lifecycle import could_not_revert  # noqa: PLC0415

        if isinstance(target, Target):
            name = target.name
        elif (target is None) == (pid is None):
            raise ValueError("give a target (a proxy or container name) or pid=..., one of them")
        else:
            name = target if target is not None else f"pid-{pid}"
        fault = TypeAdapter(Fault).validate_python({"type": type, "target": name, **attributes})
        if not isinstance(target, Target):
            target = self._target(target, pid, on_proxy=fault.on_proxy)
        faults = self._lifecycle()
        planned: list[AppliedFault] = []

        async def inject() -> None:
            try:
                planned.append(faults.plan(fault, target))
                await faults.check(planned)  # a disabled proxy must not be enabled after
                await faults.inject(planned[0])
            finally:
                await faults.aclose()  # its clients belong to this event loop

        async def revert() -> None:
            try:
                failed = could_not_revert(await faults.revert(planned))
            finally:
                await faults.aclose()
            if failed:
                journal = faults.journal
                kept = f"; `chaoskit rollback {journal.path}` takes it back" if journal else ""
                raise DriverError(f"{failed}{kept}")

        try:
            _run(inject())
        except BaseException:
            _run(revert())  # a half-applied fault is taken back too
            raise
        try:
            yield planned[0]
        finally:
            _run(revert())

    def _lifecycle(self) -> FaultLifecycle:
        """This test's faults, journaled in the session's journal (made with the first)."""
        from ..drivers.registry import Drivers  # noqa: PLC0415
        from ..runner.lifecycle import FaultLifecycle  # noqa: PLC0415

        if self._faults is None:
            journal = self._journal.journal() if self._journal is not None else None
            self._faults = FaultLifecycle(
                Drivers(self.url), journal, patience=_patience(self._patience)
            )
        return self._faults

    def _target(self, name: str | None, pid: int | None, *, on_proxy: bool) -> Target:
        """Proxy ``name`` on this API (``on_proxy``), else container ``name``, else ``pid``."""
        from ..drivers.base import Target  # noqa: PLC0415

        if pid is not None:
            if on_proxy:
                raise ValueError("this fault is applied on a proxy: give the proxy's name")
            from ..drivers.process import process_target  # noqa: PLC0415

            return process_target(pid)
        if name is None:
            raise ValueError("give a target (a proxy or container name) or pid=..., one of them")
        if on_proxy:
            from ..drivers.toxiproxy import proxy_target  # noqa: PLC0415

            return proxy_target(self.url, name)
        import docker  # noqa: PLC0415
        import docker.errors  # noqa: PLC0415

        client = docker.from_env()
        try:
            found = client.containers.get(name)
            return Target("container", found.name, dict(found.labels), {"id": found.id})
        except docker.errors.NotFound:
            raise ValueError(f"no container named '{name}' on the Docker engine") from None
        finally:
            client.close()


@pytest.fixture(scope="session")
def chaos_proxy() -> Iterator[ProxyServer]:
    """An embedded Toxiproxy-compatible server on loopback for the whole session."""
    from ..proxy import run_in_thread  # noqa: PLC0415

    with run_in_thread() as server:
        yield server


@pytest.fixture
def toxiproxy(chaos_proxy: ProxyServer) -> ToxiproxyDriver:
    """The Toxiproxy driver for the session's embedded server, for async code; its clients
    belong to the event loop that first uses them (``await toxiproxy.aclose()`` there)."""
    from ..drivers.toxiproxy import ToxiproxyDriver  # noqa: PLC0415

    return ToxiproxyDriver(chaos_proxy.url)


@pytest.fixture(scope="session")
def chaos_journal(pytestconfig: pytest.Config) -> Iterator[ChaosJournal]:
    """The session's fault journal and watchdog (under ``--chaos-report-dir``), started by
    the first fault."""
    journal = ChaosJournal(lambda: report_dir(pytestconfig))
    yield journal
    journal.close()


@pytest.fixture
def chaos(chaos_proxy: ProxyServer, chaos_journal: ChaosJournal) -> Chaos:
    """Faults as context managers that always revert, on the session's embedded proxy;
    journaled, so that even a killed pytest leaves nothing applied."""
    return Chaos(chaos_proxy.url, chaos_journal)
