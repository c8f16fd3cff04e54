"""The JSON Schema is the validator's twin: for documents generated from the example files
(values swapped, keys dropped or misspelt, tags changed), the emitted schema and chaoskit's
loader agree on valid or invalid. The loader may also find problems the schema cannot state
(two fields compared, a size's magnitude once its unit is read, a variable not declared);
each is marked ``beyond_schema`` and listed in docs/experiment-file.md, and those alone are
allowed to differ."""

from __future__ import annotations

import copy
import json
import os
from datetime import date, time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from docblocks import Block, blocks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import paths

from chaoskit.cli.files import SCHEMAS, schema_of
from chaoskit.loader import LoadError, Problem, load_experiment, load_model, read_document
from chaoskit.model.gameday import GameDayPlan
from chaoskit.safety.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
PLANS = sorted((ROOT / "experiments" / "gamedays").glob("*.yaml"))
EXPERIMENTS = sorted(
    p
    for p in (ROOT / "experiments").rglob("*")
    if p.suffix in (".yaml", ".json", ".toml") and p not in PLANS
)
POLICIES = [ROOT / "safety" / "default.yaml", ROOT / "tests" / "outage" / "policy.yaml"]


def jsonable(data: Any) -> Any:
    """The document as an editor reads it (YAML dates and times are text there)."""
    return json.loads(json.dumps(data, default=_text))


def _text(value: object) -> str:
    if isinstance(value, date | time):
        return value.isoformat()
    raise TypeError(value)


SEEDS: dict[str, list[Any]] = {
    "experiment": [jsonable(read_document(p).data) for p in EXPERIMENTS],
    "policy": [jsonable(read_document(p).data) for p in POLICIES],
    "gameday": [jsonable(read_document(p).data) for p in PLANS],
}
VALIDATORS = {kind: jsonschema.Draft202012Validator(schema_of(kind)) for kind in SCHEMAS}


def loader_problems(kind: str, data: Any, folder: Path) -> list[Problem]:
    """What chaoskit's loader says of ``data`` written as a JSON file (empty: it loads)."""
    path = folder / f"{kind}.json"
    path.write_text(json.dumps(data))
    try:
        if kind == "experiment":
            load_experiment(path, environ={})
        else:
            load_model(path, Policy if kind == "policy" else GameDayPlan)
    except LoadError as exc:
        return exc.problems
    return []


def agree(kind: str, data: Any, folder: Path) -> None:
    errors = sorted(VALIDATORS[kind].iter_errors(data), key=lambda e: list(e.absolute_path))
    problems = loader_problems(kind, data, folder)
    schema_says = [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in errors]
    field_problems = [str(p) for p in problems if not p.beyond_schema]
    assert bool(schema_says) == bool(field_problems), (
        f"schema: {schema_says or 'valid'}\nloader: {field_problems or 'valid'} "
        f"(beyond the schema: {[str(p) for p in problems if p.beyond_schema]})\n"
        f"document: {json.dumps(data)[:3000]}"
    )


# -- generating documents -------------------------------------------------------------------


def _leaves(docs: list[Any]) -> list[Any]:
    """Every scalar written in the seed documents: realistic values to move elsewhere."""
    out: list[Any] = []
    for doc in docs:
        for path in paths(doc):
            value = _get(doc, path)
            if not isinstance(value, dict | list) and value not in out:
                out.append(value)
    return out


def _keys(docs: list[Any]) -> list[str]:
    return sorted({p[-1] for d in docs for p in paths(d) if p and isinstance(p[-1], str)})


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


QUANTITIES = [
    "0s", "-1s", "+5m", "250ms", "1m30s", "1.5h", "0ms", "10us", "1000d", "s", "2 s",
    "100/s", "0/s", "6000/min", "1/h", "20%", "0%", "100%", "150%", "-5%", "0.5%", "50 %",
    "64MiB", "4KiB", "1KiB", "0B", "1GB", "100kB/s", "1Mbit/s", "${vars.x}", "${env.X:-3}",
    "${ports.frontend}", "SIGTERM", "kill", "mon", "10:00", "25:00", "2026-12-24", "2026-02-30",
    "UTC", "Mars/Base", "0 10 * * tue", "* *", "http://127.0.0.1:1/x", "demo", "backend-*",
    "", " ", "3", "true", "yes", "on", "0.5", "1e3",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70_000),
    st.sampled_from([0, 1, 2, 3, 0.0, 0.5, 1.0, 3.0, 1.5, -0.5, 2**40]),
    st.sampled_from(QUANTITIES),
    st.text(max_size=6),
)


def _value(leaves: list[Any]) -> st.SearchStrategy[Any]:
    small = st.one_of(SCALARS, st.sampled_from(leaves))
    return st.one_of(
        small,
        st.lists(small, max_size=3),
        st.dictionaries(st.sampled_from(["a", "name", "type", "of", "kind"]), small, max_size=2),
    )


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> Any:
    docs = SEEDS[kind]
    doc = copy.deepcopy(draw(st.sampled_from(docs)))
    leaves, keys = _leaves(docs), _keys(docs)
    for _ in range(draw(st.integers(1, 3))):
        inside = [p for p in paths(doc) if p]
        if not inside:
            break
        path = draw(st.sampled_from(inside))
        parent, last = _get(doc, path[:-1]), path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "add"]))
        if action == "replace":
            parent[last] = draw(_value(leaves))
        elif action == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from([*keys, "selct", "latncy", "on"]))] = draw(_value(leaves))
        else:
            parent.append(draw(_value(leaves)))
    return doc


# -- the tests ------------------------------------------------------------------------------


class _Drop:
    """Take the key away (a sentinel with a stable name, for test ids across workers)."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()

DOC_BLOCKS = [
    b for b in blocks() if b.kind in ("experiment", "policy", "plan", "fragment") and not b.skip
]


@pytest.mark.parametrize("kind", SCHEMAS)
def test_the_published_schemas_are_current(kind: str) -> None:
    """schemas/*.json is what `chaoskit schema KIND` prints: regenerate with
    `for k in experiment policy gameday; do chaoskit schema $k > schemas/$k.schema.json; done`."""
    published = json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text())
    assert published == schema_of(kind), f"schemas/{kind}.schema.json is stale: regenerate it"


@pytest.mark.parametrize("block", DOC_BLOCKS, ids=lambda b: b.id)
def test_every_doc_example_is_valid_to_the_schema(block: Block, tmp_path: Path) -> None:
    """test_doc_examples checks the loader accepts each; the schema must too."""
    path = tmp_path / f"example{block.suffix}"
    path.write_text(block.render())
    data = jsonable(read_document(path).data)
    if block.kind == "plan":
        kind = "gameday"
    elif block.kind == "policy" or block.base == "policy":
        kind = "policy"
    else:
        kind = "experiment"
    assert [e.message for e in VALIDATORS[kind].iter_errors(data)] == []


@pytest.mark.parametrize("kind", SCHEMAS)
def test_every_example_is_valid_to_both(kind: str, tmp_path: Path) -> None:
    for data in SEEDS[kind]:
        assert list(VALIDATORS[kind].iter_errors(data)) == []
        assert loader_problems(kind, data, tmp_path) == []


RULES = [
    # (file, path, new value or DROP, valid?): each rule a model checks, broken once and kept once
    ("quickstart.yaml", ("safety", "abort_when", 0, "below"), "1%", False),
    ("quickstart.yaml", ("safety", "abort_when", 0, "above"), DROP, False),
    ("quickstart.yaml", ("targets", "backends", "select"), DROP, False),
    ("quickstart.yaml", ("targets", "backends", "select"), [], False),
    ("quickstart.yaml", ("targets", "backends", "labels"), {"a": "b"}, True),
    ("backend-crash.yaml", ("targets", "backends", "select"), DROP, False),
    ("backend-crash.yaml", ("targets", "backends", "labels"), {"a": "b"}, True),
    ("container-crash.yaml", ("targets", "backends", "select"), DROP, False),
    ("container-partition.yaml", ("system", "containers", 0, "ready", "tcp"), "h:1", False),
    ("container-partition.yaml", ("system", "containers", 0, "ready", "http"), DROP, False),
    ("quickstart.yaml", ("faults", 0, "direction"), "inbound", False),
    ("quickstart.yaml", ("faults", 0, "network"), "n", False),
    ("disk-full.yaml", ("faults", 0, "free"), "1%", False),
    ("disk-full.yaml", ("faults", 0, "leave"), DROP, False),
    ("backend-crash.yaml", ("steady_state", 2, "probe", "json_path"), DROP, False),
    ("backend-crash.yaml", ("steady_state", 2, "probe", "value"), "up", False),
    ("backend-crash.yaml", ("faults", 0, "signal"), "sigterm", True),
    ("backend-crash.yaml", ("faults", 0, "signal"), "SIGNOPE", False),
    ("quickstart.yaml", ("blast_radius", "fraction"), 0.5, False),
    ("quickstart.yaml", ("blast_radius", "count"), DROP, True),
    ("quickstart.yaml", ("system", "stack"), "demo", True),
    ("quickstart.yaml", ("phases", "fault"), "0s", False),
    ("quickstart.yaml", ("phases", "fault"), "15 s", True),
    ("quickstart.yaml", ("phases", "warmup"), 0, True),
    ("quickstart.yaml", ("version",), True, False),
    ("quickstart.yaml", ("hypothesis", "trials"), "1", False),
    ("quickstart.yaml", ("safety", "abort_when", 0, "group"), "others", False),
    ("default.yaml", ("protected", 0, "select"), DROP, False),
    ("default.yaml", ("max_blast_radius", "fraction"), "50%", True),
    ("default.yaml", ("max_blast_radius", "fraction"), "0%", False),
    ("weekly.yaml", ("windows", 0, "start"), "9am", False),
]
"""The hypothesis test finds these in its long run; here each is met every time."""


@pytest.mark.parametrize(("name", "path", "value", "valid"), RULES, ids=lambda v: str(v)[:40])
def test_each_rule_is_in_both(
    name: str, path: tuple[Any, ...], value: Any, valid: bool, tmp_path: Path
) -> None:
    kind, doc = next(
        (k, copy.deepcopy(d))
        for k, files in (("experiment", EXPERIMENTS), ("policy", POLICIES), ("gameday", PLANS))
        for f, d in zip(files, SEEDS[k], strict=True)
        if f.name == name
    )
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    assert VALIDATORS[kind].is_valid(doc) is valid
    agree(kind, doc, tmp_path)


def _agreeing(examples: int) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def check(kind: str, data: st.DataObject, tmp_path: Path) -> None:
        agree(kind, data.draw(mutated(kind)), tmp_path)

    return check


test_schema_and_loader_agree = pytest.mark.parametrize("kind", SCHEMAS)(_agreeing(100))
test_schema_and_loader_agree_at_length = pytest.mark.long(
    pytest.mark.parametrize("kind", SCHEMAS)(
        _agreeing(int(os.environ.get("PARITY_EXAMPLES", "2000")))
    )
)
test_schema_and_loader_agree_at_length.__doc__ = "The same, far longer (nox -s outage runs it)."


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_validate_judges_any_mutation_against_the_policy_without_crashing(
    data: st.DataObject, tmp_path: Path
) -> None:
    """The policy pass on a partly valid file works on an experiment built from its valid
    parts: whatever the mutation, it ends in problems, never in an exception."""
    from chaoskit.validate import check_file

    path = tmp_path / "experiment.json"
    path.write_text(json.dumps(data.draw(mutated("experiment"))))
    policy = load_model(ROOT / "safety" / "default.yaml", Policy)
    report = check_file(path, policy, {})
    assert report.valid or report.problems or report.violations
