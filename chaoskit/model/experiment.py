"""The experiment file: steady state, faults, blast radius, phases, hypothesis and safety."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..units import Duration, Percent, Rate
from ._base import (
    Fraction,
    Model,
    Name,
    NonNegativeDuration,
    PositiveDuration,
    Template,
    Version,
    beyond_schema,
    close_match,
    is_set,
    schema_rules,
)
from .faults import CrashFault, Fault, PartitionFault
from .metrics import (
    ErrorRateMetric,
    LatencyMetric,
    Metric,
    ProbeMetric,
    ReplicasProbe,
    ThroughputMetric,
)
from .safety import AbortCondition, Safety
from .system import (
    ContainerSpec,
    ContainerTarget,
    ProcessSpec,
    ProcessTarget,
    ProxyTarget,
    StackSpec,
    System,
    TargetSpec,
)
from .variables import PlaceholderError, Variable, find_placeholders

__all__ = [
    "BlastRadius",
    "Experiment",
    "ExperimentProblem",
    "Hypothesis",
    "InconsistentExperiment",
    "Load",
    "Margins",
    "Phases",
    "consistency_problems",
]


class Load(Model):
    """Open-loop traffic: requests sent at a fixed rate whether or not the system keeps up."""

    url: Template
    """Where to send requests, e.g. ``http://127.0.0.1:${ports.frontend}/items``."""
    rate: Rate
    """Requests per second (or minute), e.g. ``100/s``."""
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    timeout: PositiveDuration = Duration.parse("2s")
    """A request without an answer after this counts as a ``timeout`` error."""
    max_in_flight: int = Field(default=1000, ge=1, le=100_000)
    """Cap on outstanding requests; requests due beyond it are recorded as errors, not delayed."""
    group_header: str | None = None
    """A response header naming the target that served the request (e.g. ``X-Backend``), used
    to tag each request as control or experiment."""
    workers: int = Field(default=1, ge=1, le=32)
    """Sending processes: above 1, worker ``k`` sends requests ``i ≡ k (mod workers)`` on the
    same schedule, each with its share of ``max_in_flight`` (for rates one core cannot hold)."""

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: Rate) -> Rate:
        if not 0 < value.per_second <= 50_000:
            raise beyond_schema(f"load 'rate' must be above 0 and at most 50000/s, got '{value}'")
        return value

    @model_validator(mode="after")
    def _shares(self) -> Self:
        if self.max_in_flight < self.workers:
            raise beyond_schema(
                f"load 'max_in_flight' ({self.max_in_flight}) must be at least 'workers' "
                f"({self.workers}): each worker needs a share of it"
            )
        return self


class BlastRadius(Model):
    """How many of the selected targets are hit; the rest form the control group."""

    fraction: Fraction | None = None
    """Share of targets hit, 0 to 1 or as ``34%``."""
    count: Annotated[int, Field(ge=1)] | None = None
    """Exact number of targets hit."""
    seed: int | None = None
    """Seed of the draw; chosen at random and recorded when absent."""
    control: Literal["concurrent", "none"] = "none"
    """``concurrent``: targets not hit are measured at the same time as the control group."""
    spread: Literal["host", "zone"] | None = None
    """Hit at most one target per host (or zone), as the targets' ``host`` (``zone``) label
    says: their engine's or Toxiproxy server's, or their own; without one, this machine."""
    max_per_host: Annotated[int, Field(ge=1)] | None = None
    """Hit at most this many targets on any one host."""

    def size(self, total: int) -> int:
        """How many of ``total`` targets are hit: ``count``, or the ``fraction`` of them rounded
        down (34% of 3 is 1), at least one; every target when neither is given."""
        if self.count is not None:
            return self.count
        if self.fraction is None:
            return total
        return max(1, math.floor(self.fraction * total + 1e-9))

    model_config = ConfigDict(
        json_schema_extra=schema_rules({"not": {"allOf": [is_set("fraction"), is_set("count")]}})
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.fraction is not None and self.count is not None:
            raise ValueError("give 'fraction' or 'count', not both")
        if self.control == "concurrent" and self.fraction == 1.0:
            raise beyond_schema(
                "a concurrent control group needs targets left over: fraction must be below 1"
            )
        return self


class Phases(Model):
    """How long each phase of a trial lasts."""

    warmup: NonNegativeDuration = Duration.parse("5s")
    """Traffic flows but nothing is measured (caches, connection pools, JIT)."""
    baseline: PositiveDuration = Duration.parse("30s")
    """Measured before any fault: the steady state."""
    fault: PositiveDuration = Duration.parse("30s")
    """Faults are applied (at their ``at`` offsets) and the system is observed."""
    recovery: NonNegativeDuration = Duration.parse("30s")
    """After every fault is reverted: how long to watch the system heal."""


class Margins(Model):
    """Default margins for metrics that do not give their own (fixed before the run)."""

    latency: Percent = Percent.parse("10%")
    """Median or mean latency ratio allowed: 10% slower."""
    latency_tail: Percent = Percent.parse("25%")
    """p95/p99 latency ratio allowed: 25% slower."""
    error_rate: Percent | None = None
    """Absolute increase allowed; default max(0.05 points, half the baseline rate)."""
    throughput: Percent = Percent.parse("5%")
    """Relative drop allowed."""


DEFAULT_HOLD = Duration.parse("3s")
"""How long a recovered metric must stay back, unless the recovery phase leaves less."""


class Hypothesis(Model):
    """How the verdict is reached (see docs/statistics)."""

    alpha: float = Field(default=0.05, gt=0.0, le=0.2)
    """Error rate of each statistical test."""
    margins: Margins = Field(default_factory=Margins)
    recover_within: PositiveDuration | None = None
    """The system must be back in its steady state this long after the fault is reverted (a
    metric that is not makes the run DEVIATED). Without it: by the end of the recovery phase."""
    hold: PositiveDuration | None = None
    """How long a metric must stay back in its baseline band to count as recovered: a shorter
    return before it falls out again is not a recovery. Default: 3s, or what the recovery phase
    leaves after ``recover_within`` when that is less."""
    trials: int = Field(default=1, ge=1, le=100)
    """How often inject…recover is repeated; time to recovery is summarised across trials."""
    sequential: bool = False
    """Stop the fault phase early as soon as the answer is known (always-valid tests)."""
    comparison: Literal["auto", "concurrent", "before_after"] = "auto"
    """``auto``: against the concurrent control group when there is one, else baseline."""


@dataclass(frozen=True, slots=True)
class ExperimentProblem:
    """A problem that involves several fields, at the document path it is best shown."""

    path: tuple[str | int, ...]
    message: str


class InconsistentExperiment(Exception):
    """Fields that are each valid but do not fit together (e.g. a fault's unknown target).

    Deliberately not a ``ValueError``, so pydantic does not fold it into one error at the root.
    """

    def __init__(self, problems: list[ExperimentProblem]) -> None:
        super().__init__("; ".join(f"{_dotted(p.path)}: {p.message}" for p in problems))
        self.problems = problems


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class Experiment(Model):
    """One chaos experiment, as written in its file."""

    version: Version = 1
    """Schema version of the file."""
    name: Name
    description: str = ""
    owner: str | None = None
    """Who to ask about this experiment."""
    tags: list[Name] = Field(default_factory=list)
    variables: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Variable] = Field(
        default_factory=dict
    )
    """Values for ``${vars.NAME}``; see the variables section of the docs."""
    system: System | None = None
    targets: dict[Name, TargetSpec] = Field(min_length=1)
    load: Load | None = None
    steady_state: list[Metric] = Field(min_length=1)
    faults: list[Fault] = Field(min_length=1)
    blast_radius: BlastRadius = Field(default_factory=BlastRadius)
    phases: Phases = Field(default_factory=Phases)
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)
    safety: Safety = Field(default_factory=Safety)

    @field_validator("variables", mode="before")
    @classmethod
    def _variable_shorthand(cls, value: object) -> object:
        if isinstance(value, dict):
            return {
                k: v if isinstance(v, dict) or v is None else {"default": v}
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = list(_problems(self))
        if problems:
            raise InconsistentExperiment(problems)
        return self

    def fault_names(self) -> list[str]:
        """Each fault's name, defaulting to ``<type>-<position>`` (1-based)."""
        return [f.name or f"{f.type}-{i}" for i, f in enumerate(self.faults, start=1)]

    def metric(self, name: str) -> Metric | None:
        """The steady-state metric called ``name``."""
        return next((m for m in self.steady_state if m.name == name), None)

    def planned_duration(self) -> Duration:
        """Warm-up and baseline once, then fault and recovery per trial."""
        p = self.phases
        per_trial = p.fault.nanoseconds + p.recovery.nanoseconds
        return Duration(
            p.warmup.nanoseconds + p.baseline.nanoseconds + per_trial * self.hypothesis.trials
        )

    def recovery_hold(self) -> Duration:
        """How long a metric must stay back to count as recovered (``hypothesis.hold``, or its
        default: 3s, or what the recovery phase leaves after ``recover_within``)."""
        if self.hypothesis.hold is not None:
            return self.hypothesis.hold
        within = self.hypothesis.recover_within
        room = self.phases.recovery.nanoseconds - (within.nanoseconds if within else 0)
        return Duration(max(0, min(DEFAULT_HOLD.nanoseconds, room)))

    def planned_targets(self, key: str) -> list[str] | None:
        """The names target ``key`` will select, when the file alone says so: processes and
        stack proxies chaoskit starts itself. None when the run must look (containers, pids, a
        Toxiproxy server of the user's, proxies placed in front of targets)."""
        planned = self.planned_labels(key)
        return None if planned is None else sorted(planned)

    def planned_labels(self, key: str) -> dict[str, dict[str, str]] | None:
        """:meth:`planned_targets` with each one's labels."""
        target, system = self.targets.get(key), self.system or System()
        stack = system.stack
        names: dict[str, dict[str, str]]
        if isinstance(target, ProxyTarget):
            fronts = any(
                isinstance(t, ProcessTarget | ContainerTarget) and t.listen is not None
                for t in self.targets.values()
            )
            if stack is None or stack.mode != "process" or system.toxiproxy or fronts:
                return None
            if system.toxiproxies:  # named servers' proxies are found at run time
                return None
            names = {name: {} for name in stack.backend_names()}
        elif isinstance(target, ProcessTarget) and not target.pids:
            names = {p.name: p.labels for p in system.processes}
            if stack is not None and stack.mode == "process":
                if target.labels:
                    return None  # the stack's processes carry labels of the supervisor's
                names.update({name: {} for name in stack.backend_names()})
        else:
            return None
        return {name: labels for name, labels in names.items() if target.selects(name, labels)}

    def fault_window(self, index: int) -> tuple[Duration, Duration]:
        """When fault ``index`` is applied and reverted, as offsets into the fault phase."""
        fault = self.faults[index]
        end = fault.at + fault.duration if fault.duration is not None else self.phases.fault
        return fault.at, end


def _problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """Every cross-field problem of ``exp`` (each field on its own is already valid)."""
    return consistency_problems(exp)


def consistency_problems(
    exp: Experiment, broken: frozenset[str] = frozenset()
) -> Iterator[ExperimentProblem]:
    """The cross-field problems of ``exp``, leaving out the checks that read a section named
    in ``broken`` (one that is invalid on its own, in an experiment built from the valid
    parts of a file, so that one pass reports every problem)."""
    for check, reads in _CHECKS:
        if not reads & broken:
            yield from check(exp)


def _duration_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    if exp.planned_duration() > exp.safety.max_duration:
        yield ExperimentProblem(
            ("safety", "max_duration"),
            f"the phases add up to {exp.planned_duration()} over {exp.hypothesis.trials} "
            f"trial(s), beyond max_duration ({exp.safety.max_duration}); the run would always "
            "be aborted: raise max_duration or shorten the phases",
        )


def _comparison_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    concurrent = exp.blast_radius.control == "concurrent"
    if concurrent and exp.hypothesis.comparison == "before_after":
        yield ExperimentProblem(
            ("hypothesis", "comparison"),
            "comparison 'before_after' ignores the concurrent control group the blast radius "
            "asks for: set blast_radius.control to 'none' or comparison to 'concurrent'",
        )
    elif concurrent and (exp.load is None or exp.load.group_header is None):
        yield ExperimentProblem(
            ("blast_radius", "control"),
            "a concurrent control group is measured from the requests each group served, told "
            "apart by the response header load.group_header, which is not set: without it the "
            "run would compare before and after instead; add load.group_header (the header "
            "naming the target that served, e.g. X-Backend) or set control: none",
        )
    if not concurrent and exp.hypothesis.comparison == "concurrent":
        yield ExperimentProblem(
            ("hypothesis", "comparison"),
            "comparison 'concurrent' needs blast_radius.control: concurrent",
        )


def _draw_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """A draw the run could not make, where the file says which targets there will be."""
    radius = exp.blast_radius
    for key in dict.fromkeys(f.target for f in exp.faults):
        names = exp.planned_targets(key)
        if not names:
            continue
        size = radius.size(len(names))
        where = ("blast_radius", "count" if radius.count is not None else "control")
        if size > len(names):
            yield ExperimentProblem(
                where,
                f"{size} targets would be hit, but target '{key}' will be only {len(names)} "
                f"({', '.join(names)}): lower blast_radius.count",
            )
        elif radius.control == "concurrent" and size == len(names):
            yield ExperimentProblem(
                where,
                f"a concurrent control group needs a target left over, but all {len(names)} of "
                f"target '{key}' ({', '.join(names)}) would be hit: give blast_radius.count or "
                "fraction",
            )
        elif (most := _most_spread(radius, exp.planned_labels(key) or {})) < size:
            yield ExperimentProblem(
                where,
                f"{size} targets would be hit, but target '{key}' will be {len(names)} "
                f"({', '.join(names)}) on too few hosts or zones for blast_radius.spread and "
                f"max_per_host: at most {most} (a target without a host label is on this "
                "machine)",
            )


def _most_spread(radius: BlastRadius, planned: dict[str, dict[str, str]]) -> int:
    """At most how many of ``planned`` a draw with ``spread`` and ``max_per_host`` can hit (an
    upper bound: the run's own draw says exactly)."""
    most = len(planned)
    if radius.spread is not None:
        most = min(most, len({labels.get(radius.spread) or "" for labels in planned.values()}))
    if radius.max_per_host is not None:
        hosts = Counter(labels.get("host") or "" for labels in planned.values())
        most = min(most, sum(min(radius.max_per_host, n) for n in hosts.values()))
    return most


def _recovery_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """A recovery must be possible to confirm: back by ``recover_within``, then in its band for
    the hold period, all inside the recovery phase."""
    rw, phase = exp.hypothesis.recover_within, exp.phases.recovery
    if phase.nanoseconds == 0:
        if rw is not None:
            yield ExperimentProblem(
                ("hypothesis", "recover_within"),
                "recover_within needs a recovery phase to watch: give phases.recovery",
            )
        return
    if phase < Duration.parse("1s"):
        yield ExperimentProblem(
            ("phases", "recovery"),
            f"recovery is judged in one-second windows: a {phase} recovery phase holds none; "
            "give phases.recovery at least 1s, or 0s to judge no recovery",
        )
        return
    hold = exp.recovery_hold()
    needed = Duration((rw.nanoseconds if rw is not None else 0) + hold.nanoseconds)
    if rw is not None and rw > phase:
        yield ExperimentProblem(
            ("hypothesis", "recover_within"),
            f"recover_within ({rw}) is longer than the recovery phase ({phase}): recovery "
            "could never be observed; lengthen phases.recovery",
        )
    elif exp.hypothesis.hold is not None and needed > phase:
        what = f"recover_within ({rw}) and hold ({hold})" if rw is not None else f"hold ({hold})"
        yield ExperimentProblem(
            ("hypothesis", "hold"),
            f"{what} add up to {needed}, longer than the recovery phase ({phase}): a recovery "
            f"could never be confirmed; lengthen phases.recovery to at least {needed}",
        )
    elif rw is not None and hold.nanoseconds == 0:
        yield ExperimentProblem(
            ("hypothesis", "recover_within"),
            f"recover_within ({rw}) leaves nothing of the recovery phase ({phase}) to see the "
            "system stay back: a recovery could never be confirmed; lengthen phases.recovery "
            f"(to {Duration(rw.nanoseconds + DEFAULT_HOLD.nanoseconds)} for the default "
            f"{DEFAULT_HOLD} hold)",
        )


def _name_clashes(exp: Experiment) -> Iterator[ExperimentProblem]:
    seen: dict[str, int] = {}
    for i, name in enumerate(exp.fault_names()):
        if name in seen:
            yield ExperimentProblem(
                ("faults", i, "name"),
                f"fault name '{name}' is used twice (also faults[{seen[name]}])",
            )
        seen.setdefault(name, i)
    metrics: dict[str, int] = {}
    for i, metric in enumerate(exp.steady_state):
        if metric.name in metrics:
            yield ExperimentProblem(
                ("steady_state", i, "name"),
                f"metric name '{metric.name}' is used twice "
                f"(also steady_state[{metrics[metric.name]}])",
            )
        metrics.setdefault(metric.name, i)


def _close(word: str, names: list[str]) -> str:
    """A did-you-mean for ``word`` among ``names``, else the list of them."""
    close = close_match(word, names)
    if close is not None:
        return f"; did you mean '{close}'?"
    return f" (declared: {', '.join(sorted(names)) or 'none'})"


def _fault_target_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """Each fault names a declared target of a kind it can hit."""
    for i, fault in enumerate(exp.faults):
        target = exp.targets.get(fault.target)
        if target is None:
            yield ExperimentProblem(
                ("faults", i, "target"),
                f"no target called '{fault.target}'{_close(fault.target, list(exp.targets))}",
            )
        elif target.kind not in fault.KINDS:
            *most, last = sorted(fault.KINDS)
            kinds = f"{', '.join(most)} or {last}" if most else last
            yield ExperimentProblem(
                ("faults", i, "target"),
                f"a {fault.type} fault needs a {kinds} target, but '{fault.target}' is a "
                f"{target.kind} target",
            )


def _reaches(fault: Fault, kind: str) -> bool:
    """Whether ``fault`` on a host does something to a thing of ``kind`` there (or refuses
    one: the run says so, naming it)."""
    try:
        return fault.on_host(kind) is not None
    except ValueError:
        return True


def _no_driver(index: int, fault: Fault, kind: str) -> ExperimentProblem:
    """A fault declared on a kind it takes, in a form no driver applies to that kind."""
    if isinstance(fault, PartitionFault):
        return ExperimentProblem(
            ("faults", index, "mode"),
            f"partition mode '{fault.mode}' needs a container target; use 'hang' or "
            "'refuse' for proxies and processes",
        )
    return ExperimentProblem(
        ("faults", index, "target"),
        f"no driver applies a {fault.type} fault to a {kind} target",
    )


def _fault_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    for i, fault in enumerate(exp.faults):
        target = exp.targets.get(fault.target)
        if target is None or target.kind not in fault.KINDS:
            continue  # said by _fault_target_problems
        start, end = exp.fault_window(i)
        if end > exp.phases.fault:
            yield ExperimentProblem(
                ("faults", i, "duration" if fault.duration is not None else "at"),
                f"the fault would last until {end} into the fault phase, which is only "
                f"{exp.phases.fault} long",
            )
        elif start >= exp.phases.fault:
            yield ExperimentProblem(
                ("faults", i, "at"),
                f"'at' ({start}) is not inside the fault phase ({exp.phases.fault})",
            )
        if fault.on_proxy and isinstance(target, ProcessTarget | ContainerTarget):
            if target.port is None:
                yield ExperimentProblem(
                    ("targets", fault.target, "port"),
                    f"the {fault.type} fault goes through a proxy in front of '{fault.target}': "
                    "give the target's 'port' to put it in front of",
                )
            if target.listen is None:
                yield ExperimentProblem(
                    ("targets", fault.target, "listen"),
                    f"the {fault.type} fault goes through a proxy in front of '{fault.target}': "
                    "give 'listen', a system.ports name the proxy listens on, and point the "
                    "target's clients at ${ports.NAME}",
                )
        restarted = isinstance(fault, CrashFault) and (fault.action == "restart" or fault.keep_down)
        if restarted and target.kind == "service":
            yield ExperimentProblem(
                ("faults", i, "keep_down" if getattr(fault, "keep_down", False) else "action"),
                "a Swarm task is started again by its orchestrator, not by chaoskit: use "
                "action 'kill' or 'stop', without keep_down",
            )
        if target.kind == "host":
            if not any(_reaches(fault, kind) for kind in ("proxy", "process", "container")):
                yield _no_driver(i, fault, target.kind)
        elif fault.driver("proxy" if fault.on_proxy else target.kind) is None:
            yield _no_driver(i, fault, target.kind)
        for need in sorted(fault.LAUNCH_NEEDS):
            yield from _started_feature_problems(exp, i, fault.type, need, target)
        started = bool(fault.LAUNCH_NEEDS) or fault.on_proxy
        if isinstance(target, ProcessTarget) and target.pids and started:
            yield ExperimentProblem(
                ("faults", i, "target"),
                f"a {fault.type} fault needs a process chaoskit started; target "
                f"'{fault.target}' names pids, which only faults that need nothing at launch "
                "(such as crash and pause) can hit",
            )


_Launched = ProcessSpec | ContainerSpec | StackSpec
_LAUNCH_FEATURES: dict[str, tuple[str, Callable[[_Launched], bool]]] = {
    "tmpfs": ("a 'tmpfs'", lambda spec: spec.tmpfs is not None),
    "faketime": ("'faketime: true'", lambda spec: spec.faketime),
}
"""Each launch need a fault may name (``FaultBase.LAUNCH_NEEDS``): how it is written under
``system:``, and whether a process, container or the stack is started with it."""


def _started_feature_problems(
    exp: Experiment, index: int, fault_type: str, need: str, target: Any
) -> Iterator[ExperimentProblem]:
    """A fault with a launch need (disk_full: a tmpfs; clock_skew: libfaketime) works only on
    processes and containers chaoskit starts, started with it."""
    if need not in _LAUNCH_FEATURES:
        known = ", ".join(sorted(_LAUNCH_FEATURES))
        yield ExperimentProblem(
            ("faults", index, "type"),
            f"the {fault_type} fault needs '{need}' at launch, which chaoskit cannot give "
            f"(it knows {known})",
        )
        return
    what, has = _LAUNCH_FEATURES[need]
    system = exp.system or System()
    specs: list[ProcessSpec | ContainerSpec] = [*system.processes, *system.containers]
    candidates = {s.name: has(s) for s in specs}
    if system.stack is not None:
        candidates.update(dict.fromkeys(system.stack.backend_names(), has(system.stack)))
    matching = {
        name: ready
        for name, ready in candidates.items()
        if any(fnmatchcase(name, pattern) for pattern in target.patterns())
    }
    if not matching:
        yield ExperimentProblem(
            ("faults", index, "target"),
            f"a {fault_type} fault works only on processes or containers chaoskit starts, and "
            f"nothing under system: matches target '{exp.faults[index].target}'",
        )
    for name, ready in matching.items():
        if not ready:
            yield ExperimentProblem(
                ("faults", index, "target"),
                f"a {fault_type} fault needs {what} on '{name}' (under system:)",
            )


def _metric_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    for i, metric in enumerate(exp.steady_state):
        slo = metric.max if isinstance(metric, LatencyMetric) else None
        beyond = _beyond_the_timeout(exp, slo, "'max'")
        if beyond is not None:
            yield ExperimentProblem(("steady_state", i, "max"), beyond)
        if (
            isinstance(metric, LatencyMetric | ErrorRateMetric | ThroughputMetric)
            and exp.load is None
        ):
            yield ExperimentProblem(
                ("steady_state", i, "of"),
                f"'{metric.of}' is measured from the load generator: add a 'load:' section, or "
                "use a probe metric",
            )


_THRESHOLD_KIND = {
    "latency": (Duration, "a duration such as '500ms'"),
    "error_rate": (Percent, "a percentage such as '20%'"),
    "throughput": (Rate, "a rate such as '50/s'"),
    "probe": (float, "a plain number"),
}


def _abort_metric_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """Each abort condition names a steady-state metric."""
    for i, cond in enumerate(exp.safety.abort_when):
        if exp.metric(cond.metric) is None:
            names = [m.name for m in exp.steady_state]
            yield ExperimentProblem(
                ("safety", "abort_when", i, "metric"),
                f"no steady-state metric called '{cond.metric}'{_close(cond.metric, names)}",
            )


def _safety_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    for i, cond in enumerate(exp.safety.abort_when):
        metric = exp.metric(cond.metric)
        if metric is None:
            continue  # said by _abort_metric_problems
        expected, words = _THRESHOLD_KIND[metric.of]
        if not isinstance(cond.limit, expected):
            side = "above" if cond.above is not None else "below"
            yield ExperimentProblem(
                ("safety", "abort_when", i, side),
                f"'{cond.metric}' measures {metric.of}: the limit must be {words}, "
                f"not '{cond.limit}'",
            )
        if cond.group == "control" and exp.blast_radius.control != "concurrent":
            yield ExperimentProblem(
                ("safety", "abort_when", i, "group"),
                "group 'control' needs blast_radius.control: concurrent",
            )
        elif cond.group == "control" and (exp.load is None or exp.load.group_header is None):
            yield ExperimentProblem(
                ("safety", "abort_when", i, "group"),
                "group 'control' would never see a request: requests are told apart by "
                "load.group_header, which is not set",
            )
        if isinstance(metric, ProbeMetric) and cond.group != "experiment":
            yield ExperimentProblem(
                ("safety", "abort_when", i, "group"),
                "probe metrics are not split into groups: leave 'group' out",
            )
        yield from _never_fires(exp, i, cond, metric)


def _beyond_the_timeout(exp: Experiment, limit: object, what: str) -> str | None:
    """Why a latency limit at or above the load's timeout can never be exceeded (None: it can):
    a request is given up at the timeout, and a failed one counts at it."""
    timeout = exp.load.timeout if exp.load is not None else None
    if not isinstance(limit, Duration) or timeout is None or limit < timeout:
        return None
    return (
        f"latency never reads above {limit}: a request is given up at the load's timeout "
        f"({timeout}) and a failed one counts at it; set {what} below {timeout} or raise "
        "load.timeout"
    )


def _never_fires(
    exp: Experiment, index: int, cond: AbortCondition, metric: Metric
) -> Iterator[ExperimentProblem]:
    """Conditions the valve could never act on as written (or would act on at once)."""
    side = "above" if cond.above is not None else "below"
    limit, load = cond.limit, exp.load
    found: list[tuple[str, str]] = []
    if cond.for_ >= exp.planned_duration():
        found.append(("for", f"a breach would have to last {cond.for_}, as long as the whole "
                             f"run ({exp.planned_duration()}): shorten 'for'"))  # fmt: skip
    latency = isinstance(metric, LatencyMetric) and isinstance(limit, Duration)
    beyond = _beyond_the_timeout(exp, limit, "the limit") if latency and side == "above" else None
    if beyond is not None:
        found.append((side, beyond))
    if isinstance(metric, ErrorRateMetric) and isinstance(limit, Percent):
        share = limit.percent
        if (side == "above" and share >= 100) or (side == "below" and share <= 0):
            found.append((side, f"an error rate is never {side} {limit}: give a share between "
                                "0% and 100%"))  # fmt: skip
    throughput = isinstance(metric, ThroughputMetric) and isinstance(limit, Rate)
    if throughput and load is not None and side == "below" and limit > load.rate:
        found.append((side, f"the load sends {load.rate}, so throughput is always below "
                            f"{limit}: the valve would stop every run at once; set the limit "
                            "below the load's rate"))  # fmt: skip
    if isinstance(metric, ProbeMetric) and cond.for_.nanoseconds and metric.interval > cond.for_:
        found.append(("for", f"'{metric.name}' is read every {metric.interval}, so a breach "
                             f"lasting {cond.for_} is never seen lasting: read the probe at "
                             f"least every {cond.for_} (its 'interval') or make 'for' at least "
                             f"{metric.interval}"))  # fmt: skip
    for field, message in found:
        yield ExperimentProblem(("safety", "abort_when", index, field), message)


def _front_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """A target's named ``port`` and its ``listen`` ports must be ports of the system."""
    system = exp.system
    known = set(system.port_names()) if system else set()
    own = list(system.ports) if system else []
    listening: dict[str, str] = {}
    for key, target in exp.targets.items():
        port = target.port if isinstance(target, ProcessTarget) else None
        named = list(port.values()) if isinstance(port, dict) else [port]
        for name in named:
            if isinstance(name, str) and name not in known:
                yield ExperimentProblem(
                    ("targets", key, "port"),
                    f"'{name}' names no port of the system (ports: "
                    f"{', '.join(sorted(known)) or 'none: declare them under system.ports'})",
                )
        if not isinstance(target, ProcessTarget | ContainerTarget) or target.listen is None:
            continue
        if target.port is None:
            yield ExperimentProblem(
                ("targets", key, "port"),
                "'listen' puts a proxy in front of the target: give the 'port' it relays to",
            )
        names = [target.listen] if isinstance(target.listen, str) else target.listen.values()
        for name in names:
            if name not in own:
                yield ExperimentProblem(
                    ("targets", key, "listen"),
                    f"'{name}' is not one of system.ports ({', '.join(own) or 'none'}): the "
                    "proxy needs a free port of its own, declared there",
                )
            elif name in listening:
                yield ExperimentProblem(
                    ("targets", key, "listen"),
                    f"port '{name}' is already the listen port of target '{listening[name]}'",
                )
            listening.setdefault(name, key)


def _placeholder_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """Run-time placeholders must name ports the system provides."""
    ports = set(exp.system.port_names()) if exp.system else set()
    for path, text in _strings(
        exp.model_dump(mode="json", by_alias=True, exclude={"variables", "description"})
    ):
        try:
            found = list(find_placeholders(text))
        except PlaceholderError as exc:
            yield ExperimentProblem(path, str(exc))
            continue
        for ph in found:
            if ph.namespace == "ports" and ph.name not in ports:
                known = ", ".join(sorted(ports)) or "none: declare them under system.ports"
                yield ExperimentProblem(
                    path, f"'{ph.text}' names no port of the system (ports: {known})"
                )
            elif ph.namespace in ("vars", "env"):
                yield ExperimentProblem(
                    path, f"'{ph.text}' was not substituted: load the file with chaoskit's loader"
                )


def _probe_engine_problems(exp: Experiment) -> Iterator[ExperimentProblem]:
    """A ``replicas`` probe reads through an engine the experiment names."""
    named = [e.name for e in (exp.system or System()).engines]
    for i, metric in enumerate(exp.steady_state):
        probe = metric.probe if isinstance(metric, ProbeMetric) else None
        if isinstance(probe, ReplicasProbe) and probe.engine and probe.engine not in named:
            yield ExperimentProblem(
                ("steady_state", i, "probe", "engine"),
                f"no engine called '{probe.engine}' under system.engines"
                f"{_close(probe.engine, named)}",
            )


_CHECKS: tuple[tuple[Callable[[Experiment], Iterator[ExperimentProblem]], frozenset[str]], ...] = (
    (_name_clashes, frozenset({"faults", "steady_state"})),
    (_fault_target_problems, frozenset({"faults", "targets"})),
    (_abort_metric_problems, frozenset({"safety", "steady_state"})),
    (_fault_problems, frozenset({"faults", "targets", "phases", "system"})),
    (_metric_problems, frozenset({"steady_state", "load"})),
    (
        _safety_problems,
        frozenset({"safety", "steady_state", "blast_radius", "load", "phases", "hypothesis"}),
    ),
    (_front_problems, frozenset({"targets", "system"})),
    (_placeholder_problems, frozenset({"system"})),
    (_recovery_problems, frozenset({"hypothesis", "phases"})),
    (_draw_problems, frozenset({"faults", "targets", "system", "blast_radius"})),
    (_duration_problems, frozenset({"phases", "hypothesis", "safety"})),
    (_comparison_problems, frozenset({"blast_radius", "hypothesis", "load"})),
    (_probe_engine_problems, frozenset({"steady_state", "system"})),
)
"""Each cross-field check with the sections it reads."""


def _strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))
    elif isinstance(value, str) and "$" in value:
        yield path, value
