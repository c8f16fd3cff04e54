"""``chaoskit validate``: check files and the site policy, report every problem, touch nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import typer

from .exitcodes import ExitCode
from .loader import LoadError, Problem, find_files, load_experiment, load_model, locate
from .loader.documents import read_document
from .loader.errors import Path_
from .model import Experiment
from .model.gameday import GameDayPlan
from .safety.policy import Policy, find_policy

__all__ = ["FileReport", "validate_paths"]


@dataclass
class FileReport:
    """What validation found in one file."""

    file: str
    experiment: Experiment | None = None
    plan: GameDayPlan | None = None
    """Set instead of ``experiment`` for a game-day plan file."""
    problems: list[Problem] = field(default_factory=list)
    violations: list[tuple[Problem, str]] = field(default_factory=list)
    """Policy violations as located problems, with the rule each breaks."""

    @property
    def valid(self) -> bool:
        """No schema problem and no policy violation."""
        loaded = self.experiment is not None or self.plan is not None
        return loaded and not self.problems and not self.violations


def _is_plan(path: Path) -> bool:
    """A game-day plan: ``experiments`` at the top and no ``faults``."""
    try:
        data = read_document(path).data
    except LoadError:
        return False
    return isinstance(data, dict) and "experiments" in data and "faults" not in data


def check_plan(path: Path) -> FileReport:
    """Load a game-day plan; every experiment it names must exist."""
    report = FileReport(str(path))
    try:
        report.plan = load_model(path, GameDayPlan)
    except LoadError as exc:
        report.problems = exc.problems
        return report
    missing = [n for n in report.plan.experiments if not (path.parent / n).is_file()]
    report.problems = locate(
        path,
        [(("experiments", report.plan.experiments.index(n)), f"no experiment file {n} "
          f"(relative to the plan)") for n in missing],
    )  # fmt: skip
    return report


def check_file(path: Path, policy: Policy | None, variables: Mapping[str, str]) -> FileReport:
    """Load one experiment file (or game-day plan) and check it against ``policy``."""
    if _is_plan(path):
        return check_plan(path)
    report = FileReport(str(path))
    try:
        report.experiment = load_experiment(path, variables=variables)
    except LoadError as exc:
        report.problems = exc.problems
        if exc.partial is not None and policy is not None:  # one pass says everything
            _policy_violations(report, path, policy, exc.partial.experiment, exc.partial.file_path)
        return report
    if policy is not None:
        _policy_violations(report, path, policy, report.experiment, lambda p: p)
    return report


def _policy_violations(
    report: FileReport,
    path: Path,
    policy: Policy,
    experiment: Experiment,
    file_path: Callable[[Path_], Path_],
) -> None:
    violations = policy.check(experiment)
    if violations:
        located = locate(path, [(file_path(v.path), v.message) for v in violations])
        report.violations = [(p, v.rule) for p, v in zip(located, violations, strict=True)]


def validate_paths(
    paths: list[Path],
    *,
    policy_path: Path | None,
    use_policy: bool,
    variables: Mapping[str, str],
    output: Literal["text", "json"] = "text",
) -> ExitCode:
    """Validate every experiment under ``paths``; print the results; return the exit code."""
    policy: Policy | None = None
    source = "not checked (--no-policy)"
    if use_policy:
        try:
            policy, source = find_policy(policy_path)
        except LoadError as exc:
            for problem in exc.problems:
                typer.echo(f"{typer.style('policy error', fg='red')} {problem}", err=True)
            typer.echo("The policy file is invalid: fix it, or pass --policy FILE.", err=True)
            return ExitCode.INVALID

    files = list(find_files(paths))
    missing = [p for p in paths if not p.exists()]
    reports = [check_file(p, policy, variables) for p in files if p not in missing]
    reports += [
        FileReport(str(p), problems=[Problem(str(p), 1, 1, (), "no such file or folder")])
        for p in missing
    ]
    empty = [p for p in paths if p.is_dir() and not any(find_files([p]))]

    # A file is not invalid because of the hour, but say when a run now would be refused.
    closed = [str(v) for v in policy.refusals(datetime.now(UTC))] if policy is not None else []
    if output == "json":
        json.dump({**_as_json(reports, source, empty), "refused_now": closed}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print(reports, source, empty)
        for line in closed:
            typer.echo(f"note: a run started now would be refused: {line}")
    ok = reports and all(r.valid for r in reports) and not empty
    return ExitCode.HELD if ok else ExitCode.INVALID


def _print(reports: list[FileReport], source: str, empty: list[Path]) -> None:
    """Plain lines, coloured on a terminal (click strips colour otherwise)."""
    ok, bad = typer.style("✓", fg="green"), typer.style("✗", fg="red")
    for report in reports:
        exp = report.experiment
        if report.valid and exp is not None:
            detail = (
                f"{exp.name}: {len(exp.faults)} fault(s), {len(exp.steady_state)} metric(s), "
                f"{exp.hypothesis.trials} trial(s), about {exp.planned_duration()}"
            )
            typer.echo(f"{ok} {report.file}  {typer.style(detail, dim=True)}")
            continue
        if report.valid and report.plan is not None:
            plan = report.plan
            when = (
                f"{plan.schedule.cron} ({plan.schedule.timezone})" if plan.schedule else "by hand"
            )
            detail = f"game day {plan.name}: {len(plan.experiments)} experiment(s), {when}"
            typer.echo(f"{ok} {report.file}  {typer.style(detail, dim=True)}")
            continue
        typer.echo(f"{bad} {report.file}")
        for problem in report.problems:
            typer.echo(f"  {problem}")
        for problem, rule in report.violations:
            typer.echo(f"  {problem} {typer.style(f'[policy: {rule}]', fg='yellow')}")
    for folder in empty:
        typer.echo(f"{bad} {folder}: no experiment files (.yaml, .yml, .json, .toml)")
    valid = sum(r.valid for r in reports)
    typer.echo(
        f"{len(reports)} file(s): {valid} valid, {len(reports) - valid} invalid; policy: {source}"
    )


def _as_json(reports: list[FileReport], source: str, empty: list[Path]) -> dict[str, object]:
    def problem(p: Problem, rule: str | None = None) -> dict[str, object]:
        found: dict[str, object] = {
            "line": p.line,
            "column": p.column,
            "field": p.field,
            "message": p.message,
        }
        if rule:
            found["policy_rule"] = rule
        elif p.beyond_schema:
            found["beyond_schema"] = True  # an editor using the JSON Schema cannot see it
        return found

    return {
        "policy": source,
        "valid": bool(reports) and all(r.valid for r in reports) and not empty,
        "empty_folders": [str(p) for p in empty],
        "files": [
            {
                "file": r.file,
                "valid": r.valid,
                "name": r.experiment.name if r.experiment else r.plan.name if r.plan else None,
                "problems": [problem(p) for p in r.problems]
                + [problem(p, rule) for p, rule in r.violations],
            }
            for r in reports
        ],
    }
