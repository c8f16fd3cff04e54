"""Experiment files as test items: ``pytest experiments/`` runs each for real, as ``chaoskit run``
would; HELD passes, DEVIATED fails, INCONCLUSIVE is skipped (``--chaos-inconclusive``), and
each skip or failure names its place in the experiment file."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .options import report_dir

if TYPE_CHECKING:
    from ..loader.errors import Path_, Problem
    from ..model import Experiment
    from ..model.result import RunResult
    from ..runner.run import RunOutcome

__all__ = [
    "ExperimentFailure",
    "ExperimentFile",
    "ExperimentItem",
    "pytest_collect_file",
    "pytest_runtest_makereport",
]

_SUFFIXES = {".yaml", ".yml", ".json", ".toml"}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in _SUFFIXES and _is_experiment(file_path):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


def _is_experiment(path: Path) -> bool:
    """A file whose top level has ``faults`` and ``steady_state`` (other YAML is left alone, and
    so is what chaoskit writes, such as a run's ``result.json``: it names its ``schema``)."""
    from ..loader.documents import read_document  # noqa: PLC0415
    from ..loader.errors import LoadError  # noqa: PLC0415

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
        from ..loader import LoadError, load_experiment  # noqa: PLC0415
        from ..report.markdown import render_markdown  # noqa: PLC0415
        from ..report.words import headline  # noqa: PLC0415
        from ..runner.run import PreflightError, run_experiment  # noqa: PLC0415
        from ..runner.system import BringUpError  # noqa: PLC0415
        from ..safety.policy import find_policy  # noqa: PLC0415

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
        from ..loader import locate  # noqa: PLC0415

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


def _what_went_wrong(result: RunResult, experiment: Experiment) -> list[tuple[Path_, str]]:
    """What kept a run from HOLDING, as ``chaoskit run`` says it, each with the field of the
    experiment it concerns (a metric's ``steady_state`` entry, an ``abort_when`` rule...)."""
    verdict = result.verdict
    metrics: dict[str, Path_] = {
        m.name: ("steady_state", i) for i, m in enumerate(experiment.steady_state)
    }
    found: list[tuple[Path_, str]] = [
        (("steady_state",), f"not steady before any fault: {problem}")
        for problem in (result.steady_state.problems if result.steady_state else [])
    ]
    safety = result.safety
    if safety is not None and result.outcome != "not_steady":
        rules = [c.metric for c in experiment.safety.abort_when]
        rule: Path_ = ()
        if safety.reason == "abort_when" and safety.metric in rules:
            rule = ("safety", "abort_when", rules.index(safety.metric))
        elif safety.reason == "max_duration":
            rule = ("safety", "max_duration")
        found.append((rule, f"aborted: {safety.detail} (every fault was reverted first)"))
    if result.error:
        found.append(((), f"error: {result.error}"))
    for metric in verdict.metrics if verdict else []:
        if metric.verdict != "held":
            said = f"{metric.metric}: {metric.verdict} — {metric.reason}"
            found.append((metrics.get(metric.metric, ("steady_state",)), said))
    for late in verdict.recovery_failures if verdict else []:
        said = f"{late.metric}: not recovered in time — {late.reason}"
        found.append((metrics.get(late.metric, ("steady_state",)), said))
    stopped = (verdict.stopped_early if verdict else None) or result.stopped
    if stopped:
        found.append(((), f"stopped early: {stopped}"))
    reason = verdict.reason if verdict else "no verdict"
    return found or [((), f"{result.outcome}: {reason}")]


def _finish(outcome: RunOutcome, reports: Path) -> str:
    """Write the reports and the history entry as ``chaoskit run`` does; the line naming the
    report, or saying what could not be written (the test's outcome stands either way)."""
    from ..gameday.finish import finish_run  # noqa: PLC0415

    result_path = outcome.run_dir / "result.json"
    finished = finish_run(result_path, outcome.result, reports, unwritten=outcome.unwritten)
    said = [f"report: {p}" for p in finished.written if p.name == "report.html"]
    return "; ".join(said + finished.problems)
