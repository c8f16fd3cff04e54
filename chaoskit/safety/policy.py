"""Site guardrails: what any experiment may do here, checked before anything is touched.

A policy file (``safety/default.yaml`` unless ``--policy`` names another) caps the blast
radius, limits target kinds and fault types, protects selectors that may never be targeted,
caps fault and run durations, requires abort conditions, and sets the time windows in which
experiments may run and the blackout dates on which none may. An experiment that breaks any rule
is refused whole; the windows and blackouts are checked against the clock when a run starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..loader import load_model
from ..model import Experiment
from ..model._base import (
    Fraction,
    Glob,
    Model,
    PositiveDuration,
    Version,
    is_set,
    schema_rules,
)
from ..model.faults import FaultType, TargetKind
from ..model.gameday import Blackout, TimeWindow, time_zone
from ..model.safety import Threshold, parse_threshold
from ..units import Duration, Percent, Rate

__all__ = [
    "DEFAULT_POLICY_PATH",
    "POLICY_ENV",
    "Blackout",
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
"""The kinds a policy allows when it does not say: whole hosts, Swarm tasks and nodes, whose
faults reach widest, only where a policy lists them."""
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_END_OF_DAY = time(23, 59, 59)
"""A window's default end: it runs to midnight."""
_HORIZON = timedelta(days=15)
"""How far ahead :meth:`Policy.open_until` looks for the windows to close."""


class BlastRadiusCap(Model):
    """The most an experiment may hit."""

    fraction: Fraction = 1.0
    """Largest share of the selected targets, 0 to 1 or as ``50%``."""
    count: Annotated[int, Field(ge=1)] | None = None
    """Largest number of targets."""
    hosts: Annotated[int, Field(ge=1)] | None = None
    """Most hosts a run may hit targets on, all its target groups together (by the targets'
    ``host`` label; without one, this machine)."""
    zones: Annotated[int, Field(ge=1)] | None = None
    """Most zones a run may hit targets in (by their ``zone`` label)."""

    def breaches(self, hit: int, total: int) -> list[str]:
        """The caps (``count``, ``fraction``) that hitting ``hit`` of ``total`` targets
        exceeds; a group of one can only be hit whole, so its share is never judged."""
        found = []
        if self.count is not None and hit > self.count:
            found.append("count")
        if total > 1 and hit / total > self.fraction + 1e-9:
            found.append("fraction")
        return found


class ProtectedSelector(Model):
    """Targets that may never be hit: by name pattern and/or labels, of one kind or any.

    At run time ``select`` is matched against every name a concrete target goes by (for a
    process: chaoskit's name, its own name, its executable and its command line; for a
    container: its name with and without Docker's leading ``/`` and its compose service).
    """

    kind: TargetKind | None = None
    select: Glob | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    """Why it is protected, quoted in the refusal."""

    model_config = ConfigDict(
        json_schema_extra=schema_rules({"anyOf": [is_set("select"), is_set("labels", "map")]})
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.select is None and not self.labels:
            raise ValueError("a protected entry needs 'select' or 'labels'")
        return self

    def protects(self, kind: str, names: str | Sequence[str], labels: Mapping[str, str]) -> bool:
        """True if a concrete target of this kind, going by any of ``names``, with these
        labels is protected."""
        return self.matching(kind, names, labels) is not None

    def matching(
        self, kind: str, names: str | Sequence[str], labels: Mapping[str, str]
    ) -> str | None:
        """The name of ``names`` that ``select`` matches (the first, or ``""`` when only labels
        are asked for) if this entry protects the target; else None."""
        if self.kind is not None and self.kind != kind:
            return None
        if not all(labels.get(k) == v for k, v in self.labels.items()):
            return None
        if self.select is None:
            return ""
        said = [names] if isinstance(names, str) else names
        return next((n for n in said if fnmatchcase(n, self.select)), None)


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
        where = f"{_dotted(self.path)}: " if self.path else ""
        return f"{where}{self.message} [policy: {self.rule}]"


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Policy(Model):
    """The site's guardrails."""

    version: Version = 1
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
    """When experiments may run; any time when empty. A window runs from its start up to its
    end (an end of 23:59:59, the default, runs to midnight)."""
    timezone: str = "UTC"
    """The IANA time zone blackout dates are read in, e.g. ``Europe/Berlin``."""
    blackouts: list[Blackout] = Field(default_factory=list)
    """Dates on which no experiment may run, e.g. a release freeze."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)

    def check(self, exp: Experiment, *, now: datetime | None = None) -> list[Violation]:
        """Every rule ``exp`` breaks; the windows and blackouts too when ``now`` is given."""
        found = list(self._violations(exp))
        if now is not None:
            found += self.refusals(now)
        return found

    def check_now(self, exp: Experiment) -> list[Violation]:
        """Every rule ``exp`` breaks if it started now, by this machine's clock: what a run
        checks before it touches anything."""
        return self.check(exp, now=datetime.now(UTC))

    def refusals(self, moment: datetime) -> list[Violation]:
        """Why no experiment may run at ``moment`` (timezone-aware): outside every window, or
        on a blackout date; empty if experiments may run then."""
        found = []
        if not self._in_windows(_aware(moment)):
            found.append(
                Violation(
                    (),
                    "windows",
                    f"{moment.isoformat(timespec='minutes')} is outside every allowed window "
                    f"({'; '.join(_describe(w) for w in self.windows)}): no experiment may run "
                    "now",
                )
            )
        day = moment.astimezone(ZoneInfo(self.timezone)).date()
        for blackout in self.blackouts:
            if blackout.covers(day):
                why = f" ({blackout.reason})" if blackout.reason else ""
                found.append(
                    Violation(
                        (),
                        "blackouts",
                        f"{day} is a blackout date in {self.timezone}{why}: no experiment may "
                        "run on it",
                    )
                )
        return found

    def allows(self, moment: datetime) -> bool:
        """True if experiments may run at ``moment`` (timezone-aware): inside a window, if
        there are any, and not on a blackout date."""
        moment = _aware(moment)
        return self._in_windows(moment) and not self._blacked_out(moment)

    def open_until(self, now: datetime) -> datetime | None:
        """The first moment after ``now`` at which experiments may no longer run: the end of
        the window ``now`` is in (windows that touch or overlap count as one) or the start of
        the next blackout date, whichever comes first. ``now`` itself if experiments may not
        run at ``now``; None if nothing ends it (no windows, or none that close within 15 days,
        and no blackout ahead). Returned in UTC."""
        now = _aware(now).astimezone(UTC)
        if not self.allows(now):
            return now
        if self.windows or self.blackouts:
            zones = {w.timezone for w in self.windows} | {self.timezone}
            edges = sorted(
                {e for z in zones for e in self._edges(ZoneInfo(z), now, now + _HORIZON)}
            )
            closing = next((e for e in edges if e > now and not self.allows(e)), None)
            if closing is not None:
                return closing
        today = now.astimezone(ZoneInfo(self.timezone)).date()
        ahead = [b.start for b in self.blackouts if b.start > today]
        return _first_at(min(ahead), time(0), ZoneInfo(self.timezone)) if ahead else None

    def _in_windows(self, moment: datetime) -> bool:
        return not self.windows or any(_inside(w, moment) for w in self.windows)

    def _blacked_out(self, moment: datetime) -> bool:
        day = moment.astimezone(ZoneInfo(self.timezone)).date()
        return any(b.covers(day) for b in self.blackouts)

    def _edges(self, zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every moment in about [start, end] at which, in ``zone``, the wall clock reaches a
        window's start or end or midnight, or jumps (a daylight-saving change): between two of
        them whether experiments may run cannot change."""
        marks = {time(0)} | {
            t
            for w in self.windows
            if w.timezone == zone.key
            for t in (w.start, w.end)
            if t != _END_OF_DAY
        }
        first = start.astimezone(zone).date() - timedelta(days=1)
        for offset in range((end - start).days + 3):
            day = first + timedelta(days=offset)
            for mark in marks:
                for fold in (0, 1):
                    yield datetime.combine(day, mark.replace(fold=fold), zone).astimezone(UTC)
        yield from _jumps(zone, start - timedelta(days=1), end + timedelta(days=1))

    def protection(
        self, kind: str, names: str | Sequence[str], labels: Mapping[str, str]
    ) -> ProtectedSelector | None:
        """The protected entry that covers a concrete target going by any of ``names``, if any
        (checked at run time)."""
        return next((p for p in self.protected if p.protects(kind, names, labels)), None)

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
        where = ("blast_radius", "fraction") if radius.fraction is not None else ("blast_radius",)
        groups = {f.target: exp.planned_targets(f.target) for f in exp.faults}
        if groups and all(names for names in groups.values()):
            # the file says which targets there will be: judge the draw the run will make
            for key, names in groups.items():
                yield from self._planned_draw(exp, key, names or [], where)
            return
        fraction = 1.0 if radius.fraction is None else radius.fraction
        if fraction > cap.fraction:
            said = f"{fraction:.0%}" if radius.fraction is not None else "all (100%, the default)"
            yield Violation(
                where,
                "max_blast_radius.fraction",
                f"hitting {said} of the targets is more than the {cap.fraction:.0%} allowed: "
                "set blast_radius.fraction or count",
            )

    def _planned_draw(
        self, exp: Experiment, key: str, names: list[str], where: tuple[str, ...]
    ) -> Iterator[Violation]:
        cap, total = self.max_blast_radius, len(names)
        size = exp.blast_radius.size(total)
        share = size / total
        breaches = cap.breaches(size, total)
        if "count" in breaches:
            yield Violation(
                where,
                "max_blast_radius.count",
                f"target '{key}' will be {total} targets ({', '.join(names)}): {size} would be "
                f"hit, more than the {cap.count} allowed; set blast_radius.count",
            )
        elif "fraction" in breaches:
            yield Violation(
                where,
                "max_blast_radius.fraction",
                f"target '{key}' will be {total} targets ({', '.join(names)}): {size} of them "
                f"({share:.0%}) would be hit, more than the {cap.fraction:.0%} allowed; set "
                "blast_radius.count or a smaller fraction",
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


def _aware(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{moment} has no time zone: give a timezone-aware moment")
    return moment


def _inside(window: TimeWindow, moment: datetime) -> bool:
    """``moment`` falls in the window: from its start up to, not including, its end (an end of
    23:59:59 runs to midnight; an end before the start spans midnight)."""
    local = moment.astimezone(ZoneInfo(window.timezone))
    wall = local.time().replace(tzinfo=None, fold=0)
    today, yesterday = _DAYS[local.weekday()], _DAYS[(local.weekday() - 1) % 7]
    to_midnight = window.end == _END_OF_DAY
    if window.start <= window.end:
        return today in window.days and window.start <= wall and (to_midnight or wall < window.end)
    return (today in window.days and wall >= window.start) or (
        yesterday in window.days and wall < window.end
    )


def _first_at(day: date, wall: time, zone: tzinfo) -> datetime:
    """The first moment the wall clock in ``zone`` shows ``wall`` or later on ``day``."""
    earlier, later = sorted(
        datetime.combine(day, wall.replace(fold=f), zone).astimezone(UTC) for f in (0, 1)
    )
    if earlier.astimezone(zone).replace(tzinfo=None) == datetime.combine(day, wall):
        return earlier
    jump = list(_jumps(zone, earlier, later))  # skipped by a daylight-saving change
    return jump[0] if jump else later


def _jumps(zone: tzinfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """The moments in about [start, end] at which ``zone``'s offset from UTC changes (found
    hour by hour, then to the second)."""

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, zone).utcoffset()

    here, last = math.floor(start.timestamp()), math.ceil(end.timestamp())
    while here < last:
        there = min(here + 3600, last)
        if offset(here) != offset(there):
            low, high = here, there  # the offset of low is the old one, that of high the new
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (mid, high) if offset(mid) == offset(low) else (low, mid)
            yield datetime.fromtimestamp(high, UTC)
        here = there


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
