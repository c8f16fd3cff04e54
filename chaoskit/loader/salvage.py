"""The cross-field problems of an experiment file that is also invalid field by field.

One ``chaoskit validate`` pass should report every problem of a file. Pydantic stops before
the cross-field checks when any field is invalid, so this builds an experiment from the parts
that are valid on their own (each target, metric, fault and abort condition separately; each
other section whole) and runs the checks that read only those parts. An entry that is invalid
is left out, and so is anything that refers to it, so nothing is reported twice or wrongly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from ..model import Experiment
from ..model.experiment import ExperimentProblem, consistency_problems
from ..model.safety import AbortCondition, Safety
from ..model.system import ContainerTarget, ProcessTarget, ProxyTarget
from .documents import value_at
from .errors import Path_
from .explain import doc_path

__all__ = ["Salvage", "salvage"]

_LISTS = ("faults", "steady_state")
_POLICY_READS = frozenset(
    {
        "targets",
        "faults",
        "steady_state",
        "blast_radius",
        "phases",
        "hypothesis",
        "safety",
        "system",
    }
)
"""The sections a site policy's rules read (phases and hypothesis for fault windows and the
run's length; system for the targets a run will have)."""


@dataclass
class Salvage:
    """The valid parts of a file as an experiment, and how its paths map to the file's."""

    experiment: Experiment
    broken: frozenset[str]
    """Sections invalid as a whole: checks that read them are not run."""
    positions: dict[Path_, list[int]] = field(default_factory=dict)
    """For each list kept in part, the file's index of each entry kept."""
    dropped_conditions: bool = False
    """Some abort condition was left out (a policy's required aborts cannot be judged)."""

    @property
    def whole(self) -> bool:
        """Enough of the file is valid to judge it against a site policy: no section a policy
        reads is invalid as a whole and every abort condition is there (faults, targets and
        metrics left out are reported on their own)."""
        return not (self.broken & _POLICY_READS) and not self.dropped_conditions

    def problems(self) -> list[ExperimentProblem]:
        """The cross-field problems, at the file's paths."""
        return [
            ExperimentProblem(self.file_path(p.path), p.message)
            for p in consistency_problems(self.experiment, self.broken)
        ]

    def file_path(self, path: Path_) -> Path_:
        """``path`` in the salvaged experiment as a path in the file."""
        for prefix, kept in self.positions.items():
            n = len(prefix)
            at = path[n] if path[:n] == prefix and len(path) > n else None
            if isinstance(at, int):
                return (*prefix, kept[at], *path[n + 1 :])
        return path


def _stand_in(kind: object) -> ProxyTarget | ProcessTarget | ContainerTarget | None:
    """An empty target of ``kind``: what an invalid target declares itself to be."""
    if kind == "proxy":
        return ProxyTarget.model_construct(kind="proxy")
    if kind == "process":
        return ProcessTarget.model_construct(kind="process")
    if kind == "container":
        return ContainerTarget.model_construct(kind="container")
    return None


def _valid(adapter: TypeAdapter[Any], value: Any) -> tuple[bool, Any]:
    try:
        return True, adapter.validate_python(value, strict=True)
    except ValidationError:
        return False, None


def _each(
    items: list[Any], adapter: TypeAdapter[Any], keep: Callable[[Any], bool]
) -> tuple[list[Any], list[int]]:
    kept, positions = [], []
    for i, item in enumerate(items):
        ok, value = _valid(adapter, item)
        if ok and keep(value):
            kept.append(value)
            positions.append(i)
    return kept, positions


def _without_unknown_keys(data: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
    """``data`` without the keys ``exc`` calls unknown: a misspelt key is reported on its own,
    and the section around it is still worth checking (with the default it stands for)."""
    data = copy.deepcopy(data)
    for error in exc.errors(include_url=False):
        if error["type"] != "extra_forbidden":
            continue
        path = doc_path(data, error["loc"])
        parent = value_at(data, path[:-1])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return data


def salvage(data: dict[str, Any], exc: ValidationError | None = None) -> Salvage:
    """The valid parts of the (substituted) document ``data``; ``exc`` is why it failed."""
    if exc is not None:
        data = _without_unknown_keys(data, exc)
    # what an experiment cannot be built without, fresh for each file
    fields: dict[str, Any] = {"name": "-", "targets": {}, "steady_state": [], "faults": []}
    broken: set[str] = set()
    positions: dict[Path_, list[int]] = {}
    bad_targets: set[str] = set()
    bad_metrics: set[str] = set()
    fault_types = get_args(Experiment.model_fields["faults"].annotation)[0]
    metric_types = get_args(Experiment.model_fields["steady_state"].annotation)[0]
    target_types = get_args(Experiment.model_fields["targets"].annotation)[1]

    targets = data.get("targets")
    if isinstance(targets, dict):
        adapter: TypeAdapter[Any] = TypeAdapter(target_types)
        for key, raw in targets.items():
            ok, target = _valid(adapter, raw)
            if ok:
                fields["targets"][key] = target
            else:  # still declared: a fault naming it is not told it names nothing
                bad_targets.add(str(key))
                stand_in = _stand_in(raw.get("kind") if isinstance(raw, dict) else None)
                if stand_in is None:  # of no known kind: a policy's rules on kinds cannot judge
                    broken.add("targets")
                fields["targets"][key] = stand_in or ProxyTarget.model_construct(kind="proxy")
    elif "targets" in data:
        broken.add("targets")

    metrics = data.get("steady_state")
    if isinstance(metrics, list):
        adapter = TypeAdapter(metric_types)
        fields["steady_state"], positions[("steady_state",)] = _each(metrics, adapter, bool)
        named = {m.name for m in fields["steady_state"]}
        bad_metrics = {
            m["name"]
            for m in metrics
            if isinstance(m, dict) and isinstance(m.get("name"), str) and m["name"] not in named
        }
    elif "steady_state" in data:
        broken.add("steady_state")

    faults = data.get("faults")
    if isinstance(faults, list):
        adapter = TypeAdapter(fault_types)
        fields["faults"], positions[("faults",)] = _each(
            faults, adapter, lambda f: f.target not in bad_targets
        )
    elif "faults" in data:
        broken.add("faults")

    for name, info in Experiment.model_fields.items():
        key = info.alias or name
        if key in _LISTS or key in ("targets", "variables", "safety") or key not in data:
            continue
        ok, value = _valid(TypeAdapter(info.annotation or Any), data[key])
        if ok:
            fields[name] = value
        else:
            broken.add(name)

    if "safety" in data:
        ok, value = _valid(TypeAdapter(Safety), data["safety"])
        raw = data["safety"]
        if ok:
            fields["safety"] = value
        elif isinstance(raw, dict) and isinstance(raw.get("abort_when"), list):
            conditions, positions[("safety", "abort_when")] = _each(
                raw["abort_when"],
                TypeAdapter(AbortCondition),
                lambda c: c.metric not in bad_metrics,
            )
            ok, value = _valid(TypeAdapter(Safety), {**raw, "abort_when": []})
            if ok:
                fields["safety"] = value.model_copy(update={"abort_when": conditions})
            else:
                broken.add("safety")
        else:
            broken.add("safety")
    experiment = Experiment.model_construct(**fields)
    kept = positions.get(("safety", "abort_when"))
    written = data["safety"].get("abort_when") if isinstance(data.get("safety"), dict) else None
    dropped = kept is not None and len(kept) != len(written or [])
    return Salvage(experiment, frozenset(broken), positions, dropped)
