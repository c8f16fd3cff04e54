"""The pytest plugin (entry point ``pytest11``): ``pytest experiments/`` runs experiment files as
test items (HELD passes, DEVIATED fails with the summary, INCONCLUSIVE is skipped unless
``--chaos-inconclusive`` says otherwise), and fixtures break things inside ordinary tests:

- ``chaos_proxy``: an embedded Toxiproxy-compatible server for the session (``.url``);
- ``toxiproxy``: the Toxiproxy driver for it (async);
- ``chaos``: context managers that apply a fault and always take it back, e.g.
  ``with chaos.latency("backend", "300ms"):`` or ``with chaos.crash("backend-1"):``. Each
  fault is journaled before it is applied (``--chaos-report-dir``/``pytest-*``), and a
  watchdog process reverts what is left if pytest itself is killed.

Reports and journals go under ``--chaos-report-dir``, by default a folder under pytest's
temporary directory (kept for the last few sessions, as ``tmp_path`` is). Skips and failures
name the experiment file's ``file:line:column``, as ``chaoskit validate`` does.

Everything heavy is imported when used, so the plugin costs pytest nothing when idle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from .drivers.base import AppliedFault, Target
    from .drivers.toxiproxy import ToxiproxyDriver
    from .loader.errors import Path_, Problem
    from .model import Experiment
    from .proxy import ProxyServer
    from .runner.journal import Journal
    from .runner.lifecycle import FaultLifecycle
    from .runner.run import RunOutcome
    from .runner.watchdog import Watchdog

__all__ = ["Chaos", "ChaosJournal", "ExperimentFailure", "ExperimentFile", "ExperimentItem"]

_SUFFIXES = {".yaml", ".yml", ".json", ".toml"}
_T = TypeVar("_T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaoskit", "chaos experiments")
    group.addoption(
        "--chaos-report-dir",
        default=None,
        help="Where experiment runs and the chaos fixtures' journals write their folders and "
        "history.db (default: chaos-reports under pytest's temporary directory).",
    )
    group.addoption(
        "--chaos-inconclusive",
        choices=("skip", "fail", "pass"),
        default="skip",
        help="How an INCONCLUSIVE experiment is reported (default: skip, with the reason).",
    )
    group.addoption(
        "--chaos-policy", default=None, help="Site policy file (default: as for chaoskit run)."
    )


_REPORTS = pytest.StashKey[Path]()


def report_dir(config: pytest.Config) -> Path:
    """This session's report folder: ``--chaos-report-dir`` (relative to where pytest was
    started), else ``chaos-reports`` under pytest's temporary directory, made on first use."""
    if _REPORTS not in config.stash:
        given = config.getoption("--chaos-report-dir")
        if given is not None:
            folder = config.invocation_params.dir / given
        else:
            # The session's factory (the tmp_path_factory fixture's), which pytest attaches to
            # the config for plugins; it numbers the folders and keeps the last few sessions'.
            factory: pytest.TempPathFactory | None = getattr(config, "_tmp_path_factory", None)
            if factory is None:
                raise pytest.UsageError("pytest's tmpdir plugin is off: give --chaos-report-dir")
            folder = factory.mktemp("chaos-reports", numbered=False)
        config.stash[_REPORTS] = folder
    return config.stash[_REPORTS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the report folder at the end, if the session used it."""
    folder = terminalreporter.config.stash.get(_REPORTS, None)
    if folder is not None:
        terminalreporter.write_line(f"chaoskit reports: {folder}")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in _SUFFIXES and _is_experiment(file_path):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


def _is_experiment(path: Path) -> bool:
    """A file whose top level has ``faults`` and ``steady_state`` (other YAML is left alone, and
    so is what chaoskit writes, such as a run's ``result.json``: it names its ``schema``)."""
    from .loader.documents import read_document  # noqa: PLC0415
    from .loader.errors import LoadError  # noqa: PLC0415

    try:
        data = read_document(path).data
    except (LoadError, OSError, ValueError):
        return False
    if not isinstance(data, dict) or str(data.get("schema", "")).startswith("chaoskit."):
        return False
    return "faults" in data and "steady_state" in data


class ExperimentFailure(Exception):
    """An experiment that deviated, was aborted or could not run: its message names each thing
    that went wrong at its ``file:line:column``, then the run's summary if it ran."""


class ExperimentFile(pytest.File):
    """An experiment file: one test item."""

    def collect(self) -> Iterator[ExperimentItem]:
        yield ExperimentItem.from_parent(self, name=self.path.stem)


class ExperimentItem(pytest.Item):
    """Runs the experiment for real, writes its reports and records it in the history."""

    skipped_at: int | None = None
    """The line of the experiment file an INCONCLUSIVE skip is reported at."""

    def runtest(self) -> None:
        from .loader import LoadError, load_experiment  # noqa: PLC0415
        from .report.markdown import render_markdown  # noqa: PLC0415
        from .report.words import headline  # noqa: PLC0415
        from .runner.run import PreflightError, run_experiment  # noqa: PLC0415
        from .runner.system import BringUpError  # noqa: PLC0415
        from .safety.policy import find_policy  # noqa: PLC0415

        self.skipped_at = None
        config = self.config
        policy_path = config.getoption("--chaos-policy")
        try:
            experiment = load_experiment(self.path)
        except LoadError as error:
            raise self._failure(
                error.problems, "invalid experiment file: nothing was run"
            ) from None
        try:
            policy, _ = find_policy(Path(policy_path) if policy_path else None)
        except LoadError as error:
            raise self._failure(error.problems, "invalid policy file: nothing was run") from None
        # run_experiment checks this first too; asked here, each refusal gets its line.
        refusals = policy.check_now(experiment)
        if refusals:
            found = [(v.path, f"{v.message} [policy: {v.rule}]") for v in refusals]
            raise self._failure(self._locate(found), "refused, nothing was touched")
        reports = report_dir(config)
        lines: list[str] = []
        try:
            outcome = asyncio.run(
                run_experiment(
                    experiment, policy=policy, reports=reports, log=lines.append, source=self.path
                )
            )
        except PreflightError as error:
            found = [((), f"refused, nothing was touched: {error}")]
            raise self._failure(self._locate(found)) from None
        except BringUpError as error:
            found = [(("system",), f"the system did not come up: {error}")]
            raise self._failure(self._locate(found)) from None
        finally:
            self.add_report_section("call", "chaoskit", "\n".join(lines))
        report = _finish(outcome, reports)
        self.user_properties.append(("chaoskit_run", outcome.run_dir.name))
        if outcome.verdict == "held":
            return
        problems = self._locate(_what_went_wrong(outcome.result, experiment))
        if outcome.verdict == "inconclusive":
            handling = config.getoption("--chaos-inconclusive")
            if handling == "pass":
                return
            if handling == "skip":
                word, sentence = headline(outcome.result)
                self.skipped_at = problems[0].line
                said = [f"{word}: {sentence}", *map(str, self._named(problems)), report]
                pytest.skip("\n".join(said))
        raise self._failure(problems, f"{render_markdown(outcome.result)}{report}")

    def _locate(self, found: list[tuple[Path_, str]]) -> list[Problem]:
        """Messages about fields of the experiment file, at their line and column."""
        from .loader import locate  # noqa: PLC0415

        return locate(self.path, found)

    def _named(self, problems: list[Problem]) -> list[Problem]:
        """``problems`` with the experiment file named from where pytest was started."""
        try:
            shown = str(self.path.relative_to(self.config.invocation_params.dir))
        except ValueError:
            shown = str(self.path)
        return [replace(p, file=shown) if p.file == str(self.path) else p for p in problems]

    def _failure(self, problems: list[Problem], text: str = "") -> ExperimentFailure:
        """The failure: a line per problem, at its place in its file, then ``text``."""
        lines = list(map(str, self._named(problems)))
        return ExperimentFailure("\n".join([*lines, "", text] if text else lines))

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> Any:
        if isinstance(excinfo.value, ExperimentFailure):
            return str(excinfo.value).rstrip()
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"chaos experiment {self.name}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """An INCONCLUSIVE skip is reported at its line of the experiment file (pytest would name
    the line of this plugin that skipped)."""
    report = yield
    line = item.skipped_at if isinstance(item, ExperimentItem) else None
    if line is not None and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.path), line, report.longrepr[2])
    return report


def _what_went_wrong(result: dict[str, Any], experiment: Experiment) -> list[tuple[Path_, str]]:
    """What kept a run from HOLDING, as ``chaoskit run`` says it, each with the field of the
    experiment it concerns (a metric's ``steady_state`` entry, an ``abort_when`` rule...)."""
    verdict = result.get("verdict") or {}
    metrics: dict[str, Path_] = {
        m.name: ("steady_state", i) for i, m in enumerate(experiment.steady_state)
    }
    found: list[tuple[Path_, str]] = [
        (("steady_state",), f"not steady before any fault: {problem}")
        for problem in (result.get("steady_state") or {}).get("problems") or []
    ]
    safety = result.get("safety")
    if safety and result.get("outcome") != "not_steady":
        rules = [c.metric for c in experiment.safety.abort_when]
        rule: Path_ = ()
        if safety["reason"] == "abort_when" and safety.get("metric") in rules:
            rule = ("safety", "abort_when", rules.index(safety["metric"]))
        elif safety["reason"] == "max_duration":
            rule = ("safety", "max_duration")
        found.append((rule, f"aborted: {safety['detail']} (every fault was reverted first)"))
    if result.get("error"):
        found.append(((), f"error: {result['error']}"))
    for metric in verdict.get("metrics", []):
        if metric["verdict"] != "held":
            said = f"{metric['metric']}: {metric['verdict']} — {metric['reason']}"
            found.append((metrics.get(metric["metric"], ("steady_state",)), said))
    for late in verdict.get("recovery_failures") or []:
        said = f"{late['metric']}: not recovered in time — {late['reason']}"
        found.append((metrics.get(late["metric"], ("steady_state",)), said))
    stopped = verdict.get("stopped_early") or result.get("stopped")
    if stopped:
        found.append(((), f"stopped early: {stopped}"))
    return found or [((), f"{result.get('outcome')}: {verdict.get('reason', 'no verdict')}")]


def _finish(outcome: RunOutcome, reports: Path) -> str:
    """Write the reports and the history entry as ``chaoskit run`` does; the line naming the
    report, or saying what could not be written (the test's outcome stands either way)."""
    from .gameday.finish import finish_run  # noqa: PLC0415

    result_path = outcome.run_dir / "result.json"
    finished = finish_run(result_path, outcome.result, reports, unwritten=outcome.unwritten)
    said = [f"report: {p}" for p in finished.written if p.name == "report.html"]
    return "; ".join(said + finished.problems)


# -- fixtures for ordinary tests ------------------------------------------------------------------


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to completion, also from inside a running event loop (async tests)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class ChaosJournal:
    """The write-ahead journal of the ``chaos`` fixtures and the watchdog that reverts what
    it says is applied if pytest dies. Both start with the first fault, so a session that
    injects nothing costs nothing. ``reports`` is the folder the journal goes in, or a function
    that makes it, called with the first fault."""

    LEASE = 30.0
    """Seconds without a renewal before the watchdog takes pytest for hung (a renewal thread
    keeps it alive while a test blocks or sits in a debugger; death is seen at once)."""

    def __init__(self, reports: Path | Callable[[], Path]) -> None:
        self._reports = reports
        self._journal: Journal | None = None
        self._dog: Watchdog | None = None
        self._stop = threading.Event()
        self._renewing: threading.Thread | None = None
        self._lock = threading.Lock()

    def journal(self) -> Journal:
        """The session's journal, with its watchdog started the first time."""
        from .runner import watchdog  # noqa: PLC0415
        from .runner.journal import Journal  # noqa: PLC0415

        with self._lock:
            if self._journal is None:
                run = f"pytest-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
                journal = Journal.create(self.reports / run / "journal.jsonl", run)
                self._dog = dog = watchdog.start(journal.path, timeout=self.LEASE)
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
        from .runner.journal import read_journal  # noqa: PLC0415

        if read_journal(self._journal.path).pending:
            self._journal.release()  # left open: the watchdog reverts it, or rollback will
        else:
            self._journal.close()
        self._dog.finish()


class Chaos:
    """Faults as context managers that always revert, on a Toxiproxy API (``url``), the
    Docker engine (containers by name) and local processes (by pid). With ``journal``, each
    fault is journaled before it is applied and its revert after."""

    def __init__(self, url: str, journal: ChaosJournal | None = None) -> None:
        self.url = url
        self._journal = journal
        self._faults: FaultLifecycle | None = None

    def proxy(self, name: str, upstream: str, listen: str = "127.0.0.1:0") -> str:
        """Create (or replace) proxy ``name`` relaying to ``upstream``; where it listens."""
        from .drivers.toxiproxy import ToxiproxyClient, ToxiproxyError  # noqa: PLC0415

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

        from .drivers.base import DriverError, Target  # noqa: PLC0415
        from .model import Fault  # noqa: PLC0415
        from .runner.lifecycle import could_not_revert  # noqa: PLC0415

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
        from .drivers.registry import Drivers  # noqa: PLC0415
        from .runner.lifecycle import FaultLifecycle  # noqa: PLC0415

        if self._faults is None:
            journal = self._journal.journal() if self._journal is not None else None
            self._faults = FaultLifecycle(Drivers(self.url), journal)
        return self._faults

    def _target(self, name: str | None, pid: int | None, *, on_proxy: bool) -> Target:
        """Proxy ``name`` on this API (``on_proxy``), else container ``name``, else ``pid``."""
        from .drivers.base import Target  # noqa: PLC0415

        if pid is not None:
            if on_proxy:
                raise ValueError("this fault is applied on a proxy: give the proxy's name")
            from .drivers.process import process_target  # noqa: PLC0415

            return process_target(pid)
        if name is None:
            raise ValueError("give a target (a proxy or container name) or pid=..., one of them")
        if on_proxy:
            from .drivers.toxiproxy import proxy_target  # noqa: PLC0415

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
    from .proxy import run_in_thread  # noqa: PLC0415

    with run_in_thread() as server:
        yield server


@pytest.fixture
def toxiproxy(chaos_proxy: ProxyServer) -> ToxiproxyDriver:
    """The Toxiproxy driver for the session's embedded server, for async code; its clients
    belong to the event loop that first uses them (``await toxiproxy.aclose()`` there)."""
    from .drivers.toxiproxy import ToxiproxyDriver  # noqa: PLC0415

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
