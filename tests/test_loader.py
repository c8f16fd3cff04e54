"""The loader: YAML/JSON/TOML to models, every problem located and reported together."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate, paths

from chaoskit.loader import LoadError, Problem, find_files, load_experiment, load_model
from chaoskit.model import Experiment
from chaoskit.model.faults import LatencyFault

Write = Callable[[str, str], Path]

VALID = """\
version: 1
name: sketch
system: {stack: demo}
targets:
  backends: {kind: proxy, select: "backend-*"}
load: {url: "http://127.0.0.1:${ports.frontend}/items", rate: 100/s, group_header: X-Backend}
steady_state:
  - {name: p95_latency, of: latency, quantile: 0.95, margin: 25%}
  - {name: errors, of: error_rate, max: 1%}
faults:
  - {type: latency, target: backends, latency: 300ms, jitter: 50ms}
blast_radius: {fraction: 34%, seed: 7, control: concurrent}
phases: {warmup: 5s, baseline: 30s, fault: 30s, recovery: 60s}
hypothesis: {alpha: 0.05, recover_within: 20s, trials: 3}
safety: {abort_when: [{metric: errors, above: 20%, for: 2s}], max_duration: 10m}
"""


def problems(path: Path, **kwargs: Any) -> list[Problem]:
    with pytest.raises(LoadError) as info:
        load_experiment(path, **kwargs)
    return info.value.problems


def test_the_design_sketch_loads(write: Write) -> None:
    exp = load_experiment(write("x.yaml", VALID))
    assert isinstance(exp.faults[0], LatencyFault)
    assert exp.faults[0].latency.seconds == 0.3
    assert exp.blast_radius.fraction == pytest.approx(0.34)
    assert exp.safety.abort_when[0].for_.seconds == 2


def test_json_and_toml_load_to_the_same_model(write: Write) -> None:
    data = yaml.safe_load(VALID)
    from_yaml = load_experiment(write("a.yaml", VALID))
    from_json = load_experiment(write("a.json", json.dumps(data)))
    assert from_json == from_yaml


def test_every_problem_is_located_and_reported_together(write: Write) -> None:
    text = VALID.replace("latency: 300ms", "latency: 3 sec").replace("max: 1%", "maxx: 1%")
    found = problems(write("x.yaml", text))
    assert [(p.line, p.field) for p in found] == [
        (9, "steady_state[1].maxx"),
        (11, "faults[0].latency"),
    ]
    assert "did you mean 'max'" in found[0].message
    assert "'3 sec'" in found[1].message and "'250ms'" in found[1].message
    rendered = str(LoadError(found))
    assert rendered.splitlines()[1].startswith(f"{found[1].file}:11:")


def test_unknown_top_level_key_suggests_the_right_one(write: Write) -> None:
    found = problems(write("x.yaml", VALID + "hypotesis: {}\n"))
    assert found[0].field == "hypotesis"
    assert "did you mean 'hypothesis'" in found[0].message
    assert (found[0].line, found[0].column) == (16, 1)


def test_unknown_key_without_close_match_lists_the_allowed_keys(write: Write) -> None:
    text = VALID.replace("jitter: 50ms", "jitter: 50ms, zzz: 1")
    found = problems(write("x.yaml", text))
    assert "allowed here:" in found[0].message and "stream" in found[0].message


def test_cross_field_problems_point_at_the_field(write: Write) -> None:
    text = VALID.replace("target: backends", "target: backend")
    found = problems(write("x.yaml", text))
    assert found[0].field == "faults[0].target"
    assert found[0].line == 11
    assert "no target called 'backend'; did you mean 'backends'?" in found[0].message


def test_duplicate_keys_are_errors(write: Write) -> None:
    found = problems(write("x.yaml", VALID + "name: again\n"))
    assert found[0].line == 16 and "duplicate key 'name' (first on line 2)" in found[0].message


def test_yaml_syntax_error_is_located(write: Write) -> None:
    found = problems(write("x.yaml", "name: [unclosed\nfaults: x\n"))
    assert found[0].line >= 1 and "not valid YAML" in found[0].message


def test_unquoted_placeholder_in_flow_style_gets_a_hint(write: Write) -> None:
    found = problems(write("x.yaml", "load: {rate: ${vars.rate}}\n"))
    assert "quote values that hold ${...}" in found[0].message


def test_yaml_is_loaded_safely(write: Write) -> None:
    found = problems(write("x.yaml", "name: !!python/object/apply:os.system ['true']\n"))
    assert "not valid YAML" in found[0].message


def test_alias_bombs_are_refused(write: Write) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):
        prev = "a" if i == 1 else f"l{i - 1}"
        lines.append(f"l{i}: &l{i} [{', '.join(['*' + prev] * 10)}]")
    found = problems(write("x.yaml", "\n".join(lines) + "\n"))
    assert "too large" in found[0].message


def test_json_errors_are_located(write: Write) -> None:
    found = problems(write("x.json", '{"name": "x",\n  "faults": [}\n'))
    assert (found[0].line, "not valid JSON" in found[0].message) == (2, True)


def test_toml_errors_are_located(write: Write) -> None:
    text = 'version = 1\nname = "t"\n[load]\nurl = "http://x"\nrate = "100"\n'
    found = problems(write("x.toml", text))
    rate = next(p for p in found if p.field == "load.rate")
    assert rate.line == 5
    syntax = problems(write("y.toml", "name = \n"))
    assert syntax[0].line == 1 and "not valid TOML" in syntax[0].message


def test_unknown_file_type_and_missing_file(write: Write, tmp_path: Path) -> None:
    assert "unknown file type '.txt'" in problems(write("x.txt", VALID))[0].message
    assert problems(tmp_path / "nope.yaml")[0].message == "no such file"


def test_top_level_must_be_a_mapping(write: Write) -> None:
    assert "mapping" in problems(write("x.yaml", "- a\n- b\n"))[0].message


def test_variables_are_substituted_before_validation(write: Write) -> None:
    text = "variables:\n  rate: {default: 5/s, env: CK_RATE}\n" + VALID.replace(
        "rate: 100/s", 'rate: "${vars.rate}"'
    )
    path = write("x.yaml", text)
    assert str(load_experiment(path, environ={}).load.rate) == "5/s"  # type: ignore[union-attr]
    assert str(load_experiment(path, environ={"CK_RATE": "7/s"}).load.rate) == "7/s"  # type: ignore[union-attr]
    over = load_experiment(path, variables={"rate": "9/s"}, environ={"CK_RATE": "7/s"})
    assert str(over.load.rate) == "9/s"  # type: ignore[union-attr]


def test_placeholder_problems_are_located(write: Write) -> None:
    text = VALID.replace("rate: 100/s", 'rate: "${vars.nope}"')
    found = problems(write("x.yaml", text), environ={})
    assert (found[0].line, found[0].field) == (6, "load.rate")
    assert "names no declared variable" in found[0].message


def test_run_time_placeholders_in_typed_fields_get_a_hint(write: Write) -> None:
    text = VALID.replace("rate: 100/s", 'rate: "${ports.frontend}"')
    found = problems(write("x.yaml", text))
    assert "can only be used in text fields" in found[0].message


def test_run_time_ports_must_exist(write: Write) -> None:
    text = VALID.replace("${ports.frontend}", "${ports.frontnd}")
    found = problems(write("x.yaml", text))
    assert "names no port of the system" in found[0].message and "frontend" in found[0].message


def test_invalid_variable_declarations_are_located(write: Write) -> None:
    found = problems(write("x.yaml", "variables:\n  a: {deflt: 1}\n" + VALID))
    assert found[0].field == "variables.a.deflt" and found[0].line == 2


def test_load_model_for_other_schemas(write: Write) -> None:
    with pytest.raises(LoadError):
        load_model(write("x.yaml", "name: 1\n"), LatencyFault)


def test_find_files_searches_folders(tmp_path: Path, write: Write) -> None:
    write("a/one.yaml", "x: 1")
    write("a/b/two.toml", "x = 1")
    write("a/notes.txt", "")
    names = [p.name for p in find_files([tmp_path / "a"])]
    assert names == ["two.toml", "one.yaml"] or sorted(names) == ["one.yaml", "two.toml"]


# ---------------------------------------------------------------------------------------------
# Property: whatever the file holds, the loader returns a model or its own located error.


def assert_loads_or_fails_cleanly(path: Path) -> None:
    try:
        result = load_experiment(path, environ={})
    except LoadError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1
            assert str(problem).startswith(f"{path}:{problem.line}:{problem.column}: ")
            assert problem.message
    else:
        assert isinstance(result, Experiment)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(["1s", "10%", "100/s", "64MiB", "${vars.x}", "${ports.a}", "$${", "${"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=5),
    ),
    max_leaves=30,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=documents)
def test_arbitrary_yaml_documents(write: Write, doc: Any) -> None:
    assert_loads_or_fails_cleanly(write("doc.yaml", yaml.safe_dump(doc)))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=200))
def test_arbitrary_text(write: Write, text: str) -> None:
    assert_loads_or_fails_cleanly(write("doc.yaml", text))


EXAMPLES = sorted((Path(__file__).parent.parent / "experiments").rglob("*.yaml"))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_example_files(write: Write, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(EXAMPLES))
    doc = yaml.safe_load(source.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(doc)))
        action = data.draw(st.sampled_from(["delete", "replace", "add"]))
        doc = mutate(doc, path, action, data.draw(documents))
    suffix = data.draw(st.sampled_from([".yaml", ".json"]))
    text = yaml.safe_dump(doc) if suffix == ".yaml" else json.dumps(doc, default=str)
    assert_loads_or_fails_cleanly(write("mutant" + suffix, text))


# -- one pass, every problem; YAML as editors read it ---------------------------------------

SEVEN_TYPOS = """\
version: 1
name: typos
system: {stack: {replicas: 3, replica: 2}}
targets:
  backends: {kind: proxy, selct: "backend-*"}
  all: {kind: proxy, select: "backend-*"}
load: {url: "http://127.0.0.1:${ports.frontend}/items", rat: 100/s}
steady_state:
  - {name: p95, of: latncy, quantile: 0.95}
  - {name: errors, of: error_rate, max: 1%}
faults:
  - {type: latncy, target: backends, latency: 300ms}
  - {type: latency, target: all, latency: 300ms}
  - {type: latency, target: backend, latency: 300ms}
phases: {warmup: 5s, baseline: 30s, fault: 30s, recovery: 60s}
hypothesis: {recover_within: 20s, trials: 3}
safety:
  abort_when: [{metric: error, above: 20%, for: 2s}]
  max_duration: 10m
"""


def test_one_pass_reports_every_problem_with_a_way_forward(write: Write) -> None:
    """Field problems, cross-field problems and the site policy, all at once: before, this
    file took three rounds of fixes to see them all."""
    found = problems(write("x.yaml", SEVEN_TYPOS))
    said = {p.field: p.message for p in found}
    assert said["system.stack.replica"].endswith("did you mean 'replicas'?")
    assert said["targets.backends.selct"].endswith("did you mean 'select'?")
    assert said["load.rat"] == "unknown key 'rat'; did you mean 'rate'? ('rate' is required)"
    assert "load.rate" not in said  # the same problem, said once
    assert "did you mean 'latency'?" in said["steady_state[0]"]
    assert "did you mean 'latency'?" in said["faults[0]"]
    assert said["faults[2].target"] == "no target called 'backend'; did you mean 'backends'?"
    assert "faults[0].target" not in said  # it names a target that is itself invalid
    assert said["safety.abort_when[0].metric"].endswith("did you mean 'errors'?")
    assert len(found) == 7


def test_validate_adds_the_policy_in_the_same_pass(write: Write, root: Path) -> None:
    from typer.testing import CliRunner

    from chaoskit.cli import app

    path = write("x.yaml", SEVEN_TYPOS.replace("{metric: error,", "{metric: errors,"))
    policy = root / "safety" / "default.yaml"
    out = CliRunner().invoke(app, ["validate", "--policy", str(policy), str(path)]).output
    assert "did you mean 'backends'?" in out and "[policy: max_blast_radius.fraction]" in out


def test_a_concurrent_control_needs_a_way_to_tell_the_groups_apart(write: Write) -> None:
    text = VALID.replace(", group_header: X-Backend", "")
    [problem] = problems(write("x.yaml", text))
    assert problem.path == ("blast_radius", "control") and "add load.group_header" in (
        problem.message
    )


def test_yaml_is_read_as_yaml_1_2(write: Write, root: Path) -> None:
    """on/yes/no stay text, as editors read them: a notify's `on:` is the key users meant, a
    window's 10:00 is a time of day (YAML 1.1 made it 600), and `yes` for a flag is refused
    with a hint instead of read as true."""
    from chaoskit.model.gameday import GameDayPlan

    plan = write(
        "p.yaml",
        "name: p\nexperiments: [a.yaml]\nnotify: {url: 'http://127.0.0.1:1/', on: [abort]}\n"
        "windows: [{start: 10:00, end: 17:30}]\n",
    )
    loaded = load_model(plan, GameDayPlan)
    assert loaded.notify is not None and loaded.notify.on == ["abort"]
    assert str(loaded.windows[0].start) == "10:00:00"
    flagged = VALID.replace("system: {stack: demo}", "system: {stack: {faketime: yes}}")
    [flag] = problems(write("x.yaml", flagged))
    assert flag.field == "system.stack.faketime" and "write true or false" in flag.message


def test_text_is_no_number_unless_a_placeholder_gave_it(write: Write) -> None:
    """The schema refuses "3" for a whole number, and so does the loader; `${env.N}` is always
    text, so where a placeholder stood its text is read as the number it spells."""
    quoted = VALID.replace("system: {stack: demo}", 'system: {stack: {replicas: "3"}}')
    [problem] = problems(write("x.yaml", quoted))
    assert problem.field == "system.stack.replicas" and "integer" in problem.message
    placed = VALID.replace("system: {stack: demo}", 'system: {stack: {replicas: "${env.N}"}}')
    loaded = load_experiment(write("y.yaml", placed), environ={"N": "2"})
    assert loaded.system is not None and loaded.system.stack is not None
    assert loaded.system.stack.replicas == 2
    tag = VALID.replace("{type: latency,", '{type: "${env.T}",')
    [refused] = problems(write("z.yaml", tag), environ={"T": "latency"})
    assert refused.field == "faults[0].type" and "write the word itself" in refused.message


def test_the_policy_pass_does_not_guess_an_invalid_targets_kind(write: Write) -> None:
    """A process target with a typo is still a process target to the policy: a site that
    allows only processes does not refuse it as something else."""
    from typer.testing import CliRunner

    from chaoskit.cli import app

    policy = write("policy.yaml", "allowed_target_kinds: [process]\nallowed_fault_types: [crash]\n")
    text = SEVEN_TYPOS.replace("kind: proxy, selct", "kind: process, selct")
    path = write("x.yaml", text.replace("  all: {kind: proxy", "  all: {kind: process"))
    out = CliRunner().invoke(app, ["validate", "--policy", str(policy), str(path)]).output
    assert "did you mean 'select'?" in out and "[policy: allowed_fault_types]" in out
    assert "allowed_target_kinds" not in out


def test_one_files_salvage_leaves_nothing_behind_for_the_next(write: Write) -> None:
    """The valid parts of a broken file are built afresh for each file: a target declared in
    one is not declared in the next."""
    first = SEVEN_TYPOS.replace("  all: {kind: proxy", "  extra: {kind: proxy")
    problems(write("a.yaml", first))
    found = problems(write("b.yaml", SEVEN_TYPOS.replace("target: backend,", "target: extra,")))
    [named] = [p for p in found if p.field == "faults[2].target"]
    assert named.message.startswith("no target called 'extra'")
