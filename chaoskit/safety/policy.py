"""Site guardrails: what any experiment may do here, checked before anything is touched.

A policy file (``safety/default.yaml`` unless ``--policy`` names another) caps the blast
radius, limits target kinds and fault types, protects selectors that may never be targeted,
caps fault and run durations, requires abort conditions and sets the time windows in which
experiments may run. An experiment that breaks any rule is refused whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from ..loader import load_model
from ..model import Experiment
from ..model._base import Fraction, Glob, Model, PositiveDuration
from ..model.faults import FaultType, TargetKind
from ..model.gameday import TimeWindow
from ..model.safety import Threshold, parse_threshold
from ..units import Duration, Percent, Rate

__all__ = [
    "DEFAULT_POLICY_PATH",
    "POLICY_ENV",
    "BlastRadiusCap",
    "Policy",
    "ProtectedSelector",
    "RequiredAbort",
    "TimeWindow",
    "Violation",
    "find_policy",
]

DEFAULT_POLICY_PATH = Path("safety") / "default.yaml"
"""Looked for in the current folder when no policy is named."""
POLICY_ENV = "CHAOSKIT_POLICY"
"""An environment variable naming the policy file."""

_KINDS: tuple[TargetKind, ...] = ("proxy", "process", "container")


class BlastRadiusCap(Model):
    """The most an experiment may hit."""

    fraction: Fraction = 1.0
    """Largest share of the selected targets, 0 to 1 or as ``50%``."""
    count: Annotated[int, Field(ge=1)] | None = None
    """Largest number of targets."""


class ProtectedSelector(Model):
    """Targets that may never be hit: by name pattern and/or labels, of one kind or any."""

    kind: TargetKind | None = None
    select: Glob | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    """Why it is protected, quoted in the refusal."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.select is None and not self.labels:
            raise ValueError("a protected entry needs 'select' or 'labels'")
        return self

    def protects(self, kind: str, name: str, labels: Mapping[str, str]) -> bool:
        """True if a concrete target with this kind, name and labels is protected."""
        if self.kind is not None and self.kind != kind:
            return False
        if self.select is not None and not fnmatchcase(name, self.select):
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())


class RequiredAbort(Model):
    """Every experiment must carry an abort condition on a metric of this kind."""

    of: Literal["latency", "error_rate", "throughput", "probe"]
    at_most: Threshold | None = None
    """For ``above`` conditions: the limit may be no higher than this (e.g. ``50%``)."""
    at_least: Threshold | None = None
    """For ``below`` conditions: the limit may be no lower than this (e.g. ``10/s``)."""
    within: Duration | None = None
    """The condition's ``for`` may be no longer than this."""

    @field_validator("at_most", "at_least", mode="before")
    @classmethod
    def _parse(cls, value: object) -> Threshold | None:
        return None if value is None else parse_threshold(value)


@dataclass(frozen=True, slots=True)
class Violation:
    """A policy rule an experiment breaks: the experiment field, the rule, and why."""

    path: tuple[str | int, ...]
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{_dotted(self.path)}: {self.message} [policy: {self.rule}]"


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Policy(Model):
    """The site's guardrails."""

    version: Literal[1] = 1
    description: str = ""
    max_blast_radius: BlastRadiusCap = Field(default_factory=BlastRadiusCap)
    allowed_target_kinds: list[TargetKind] = Field(default_factory=lambda: list(_KINDS))
    allowed_fault_types: list[FaultType] | None = None
    """Fault types allowed here; all when absent."""
    protected: list[ProtectedSelector] = Field(default_factory=list)
    max_fault_duration: PositiveDuration = Duration.parse("10m")
    """No single fault may stay applied longer."""
    max_run_duration: PositiveDuration = Duration.parse("1h")
    """An experiment's ``safety.max_duration`` may be no longer."""
    require_abort: list[RequiredAbort] = Field(default_factory=list)
    windows: list[TimeWindow] = Field(default_factory=list)
    """When experiments may run; any time when empty."""

    def check(self, exp: Experiment, *, now: datetime | None = None) -> list[Violation]:
        """Every rule ``exp`` breaks; the time windows too when ``now`` is given."""
        found = list(self._violations(exp))
        if now is not None and not self.allows(now):
            found.append(
                Violation(
                    (),
                    "windows",
                    f"{now.isoformat(timespec='minutes')} is outside every allowed window "
                    f"({'; '.join(_describe(w) for w in self.windows)})",
                )
            )
        return found

    def allows(self, moment: datetime) -> bool:
        """True if experiments may run at ``moment``."""
        return not self.windows or any(w.contains(moment) for w in self.windows)

    def protection(
        self, kind: str, name: str, labels: Mapping[str, str]
    ) -> ProtectedSelector | None:
        """The protected entry that covers a concrete target, if any (checked at run time)."""
        return next((p for p in self.protected if p.protects(kind, name, labels)), None)

    def _violations(self, exp: Experiment) -> Iterator[Violation]:
        yield from self._blast_radius(exp)
        for key, target in exp.targets.items():
            if target.kind not in self.allowed_target_kinds:
                yield Violation(
                    ("targets", key, "kind"),
                    "allowed_target_kinds",
                    f"{target.kind} targets are not allowed here "
                    f"(allowed: {', '.join(self.allowed_target_kinds)})",
                )
            yield from self._protected(key, target.kind, target.patterns(), target.labels)
        for i, fault in enumerate(exp.faults):
            if self.allowed_fault_types is not None and fault.type not in self.allowed_fault_types:
                yield Violation(
                    ("faults", i, "type"),
                    "allowed_fault_types",
                    f"{fault.type} faults are not allowed here "
                    f"(allowed: {', '.join(self.allowed_fault_types)})",
                )
            start, end = exp.fault_window(i)
            length = Duration(end.nanoseconds - start.nanoseconds)
            if length > self.max_fault_duration:
                yield Violation(
                    ("faults", i, "duration" if fault.duration else "target"),
                    "max_fault_duration",
                    f"this fault would stay applied for {length}, beyond the "
                    f"{self.max_fault_duration} allowed: give it a shorter 'duration' or shorten "
                    "phases.fault",
                )
        if exp.safety.max_duration > self.max_run_duration:
            yield Violation(
                ("safety", "max_duration"),
                "max_run_duration",
                f"{exp.safety.max_duration} is beyond the {self.max_run_duration} a run may last",
            )
        for rule_index, rule in enumerate(self.require_abort):
            yield from self._required_abort(exp, rule, rule_index)

    def _blast_radius(self, exp: Experiment) -> Iterator[Violation]:
        cap, radius = self.max_blast_radius, exp.blast_radius
        if radius.count is not None:
            if cap.count is not None and radius.count > cap.count:
                yield Violation(
                    ("blast_radius", "count"),
                    "max_blast_radius.count",
                    f"{radius.count} targets is more than the {cap.count} allowed",
                )
            return
        fraction = 1.0 if radius.fraction is None else radius.fraction
        if fraction > cap.fraction:
            where = (
                ("blast_radius", "fraction") if radius.fraction is not None else ("blast_radius",)
            )
            said = f"{fraction:.0%}" if radius.fraction is not None else "all (100%, the default)"
            yield Violation(
                where,
                "max_blast_radius.fraction",
                f"hitting {said} of the targets is more than the {cap.fraction:.0%} allowed: "
                "set blast_radius.fraction or count",
            )

    def _protected(
        self, key: str, kind: str, patterns: list[str], labels: Mapping[str, str]
    ) -> Iterator[Violation]:
        for entry in self.protected:
            if entry.kind is not None and entry.kind != kind:
                continue
            label_clash = bool(entry.labels) and all(
                labels.get(k) == v for k, v in entry.labels.items()
            )
            name_clash = entry.select is not None and any(
                _globs_meet(pattern, entry.select) for pattern in patterns
            )
            if (label_clash and (entry.select is None or name_clash)) or (
                name_clash and not entry.labels
            ):
                what = entry.select or ", ".join(f"{k}={v}" for k, v in entry.labels.items())
                why = f" ({entry.reason})" if entry.reason else ""
                yield Violation(
                    ("targets", key, "select" if name_clash else "labels"),
                    "protected",
                    f"target '{key}' can select protected {kind} targets '{what}'{why}",
                )

    def _required_abort(
        self, exp: Experiment, rule: RequiredAbort, index: int
    ) -> Iterator[Violation]:
        metrics = {m.name for m in exp.steady_state if m.of == rule.of}
        conditions = [c for c in exp.safety.abort_when if c.metric in metrics]
        fitting = [c for c in conditions if _fits(c.above, c.below, c.for_, rule)]
        if fitting:
            return
        limits = []
        if rule.at_most is not None:
            limits.append(f"above at most {rule.at_most}")
        if rule.at_least is not None:
            limits.append(f"below at least {rule.at_least}")
        if rule.within is not None:
            limits.append(f"'for' at most {rule.within}")
        detail = f" ({', '.join(limits)})" if limits else ""
        yield Violation(
            ("safety", "abort_when"),
            f"require_abort[{index}]",
            f"every experiment here must abort on its {rule.of}{detail}: add a steady-state "
            f"'{rule.of}' metric and a safety.abort_when condition on it",
        )


def _fits(
    above: Threshold | None, below: Threshold | None, for_: Duration, rule: RequiredAbort
) -> bool:
    if rule.within is not None and for_ > rule.within:
        return False
    if rule.at_most is not None:
        return above is not None and _le(above, rule.at_most)
    if rule.at_least is not None:
        return below is not None and _le(rule.at_least, below)
    return True


def _le(a: Threshold, b: Threshold) -> bool:
    if isinstance(a, Duration) and isinstance(b, Duration):
        return a <= b
    if isinstance(a, Percent) and isinstance(b, Percent):
        return a <= b
    if isinstance(a, Rate) and isinstance(b, Rate):
        return a <= b
    if isinstance(a, float) and isinstance(b, float):
        return a <= b
    return False  # different units never satisfy the rule


def _globs_meet(a: str, b: str) -> bool:
    """Could two name patterns select the same name? (Each tried as a name against the other.)"""
    return fnmatchcase(a, b) or fnmatchcase(b, a) or a == "*" or b == "*"


def _describe(window: TimeWindow) -> str:
    days = ",".join(window.days)
    return f"{days} {window.start:%H:%M}-{window.end:%H:%M} {window.timezone}"


def find_policy(
    explicit: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Policy, str]:
    """The policy in force and where it came from: ``--policy``, ``$CHAOSKIT_POLICY``,
    ``./safety/default.yaml``, else the built-in defaults. Raises ``LoadError``."""
    env = os.environ if environ is None else environ
    if explicit is not None:
        return load_model(explicit, Policy), str(explicit)
    if env.get(POLICY_ENV):
        return load_model(Path(env[POLICY_ENV]), Policy), env[POLICY_ENV]
    if DEFAULT_POLICY_PATH.is_file():
        return load_model(DEFAULT_POLICY_PATH, Policy), str(DEFAULT_POLICY_PATH)
    return Policy(), "built-in defaults"
