"""Hostile files: whatever a user types into an experiment, policy or game-day plan, chaoskit
loads it or says what is wrong (file:line:column, field, what to do), never a traceback.

Valid skeletons (the repository's own files) get mutated leaves: deep nesting, YAML tags and
dates, NUL and control characters, NaN and infinity, huge numbers, odd keys, alias bombs, wrong
types. Each mutant is written as YAML (flow and block style), JSON or mangled bytes and fed
through the code paths the CLI uses. ``CHAOSKIT_FUZZ_EXAMPLES`` raises the number of examples
for a longer campaign (the default keeps the suite fast).
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate, paths
from pydantic import BaseModel
from typer.testing import CliRunner

from chaoskit.cli import app
from chaoskit.gameday.plan import load_plan
from chaoskit.loader import LoadError, load_experiment
from chaoskit.model import Experiment
from chaoskit.model.gameday import GameDayPlan
from chaoskit.safety.policy import Policy, find_policy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("CHAOSKIT_FUZZ_EXAMPLES", "70"))

Loader = Callable[[Path], BaseModel]


def _experiment(path: Path) -> BaseModel:
    return load_experiment(path, environ={})


def _policy(path: Path) -> BaseModel:
    return find_policy(path, environ={})[0]


def _plan(path: Path) -> BaseModel:
    return load_plan(path)


def _skeletons() -> list[tuple[str, Any, Loader, type[BaseModel]]]:
    found: list[tuple[str, Any, Loader, type[BaseModel]]] = []
    for name in ("quickstart.yaml", "clock-skew.yaml", "connection-faults.yaml"):
        data = yaml.safe_load((ROOT / "experiments" / name).read_text())
        found.append((f"experiment {name}", data, _experiment, Experiment))
    policy = yaml.safe_load((ROOT / "safety" / "default.yaml").read_text())
    policy.setdefault("require_abort", [{"of": "error_rate", "at_most": "50%", "within": "10s"}])
    policy.setdefault("max_blast_radius", {"fraction": 0.5, "count": 3})
    found.append(("policy", policy, _policy, Policy))
    plan = yaml.safe_load((ROOT / "experiments" / "gamedays" / "weekly.yaml").read_text())
    plan["notify"] = {"url": "https://hooks.example/chaos", "on": ["deviation"]}
    found.append(("game-day plan", plan, _plan, GameDayPlan))
    return found


SKELETONS = _skeletons()


def assert_loads_or_fails_cleanly(path: Path, load: Loader, model: type[BaseModel]) -> None:
    """Either a model, or a LoadError whose every problem is located and says something."""
    try:
        result = load(path)
    except LoadError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line >= 1 and problem.column >= 1
            assert str(problem).startswith(f"{path}:{problem.line}:{problem.column}: ")
            assert problem.message and len(problem.message) < 2000
    else:
        assert isinstance(result, model)
        assert _finite(result.model_dump()), "a loaded file holds NaN or infinity"


def _finite(data: Any) -> bool:
    """No NaN or infinity anywhere: such a limit can never trip."""
    if isinstance(data, dict):
        return all(_finite(v) for v in data.values())
    if isinstance(data, list | tuple | set):
        return all(_finite(v) for v in data)
    return not isinstance(data, float) or math.isfinite(data)


# ---------------------------------------------------------------------------------------------
# Every class of crash the fuzz found, pinned with the message users get.

BASE = (ROOT / "experiments" / "quickstart.yaml").read_text()
BOMB = "[&a0 [x, x, x, x, x, x, x, x, x, x]" + "".join(
    f", &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)
) + "]"  # fmt: skip


def _with(key: str, value: str) -> str:
    """The quickstart experiment with one more top-level line (unknown keys still parse)."""
    return BASE + f"{key}: {value}\n"


def _set(old: str, new: str) -> str:
    """The quickstart experiment with ``old`` written as ``new``."""
    assert old in BASE
    return BASE.replace(old, new, 1)


ALIAS_DEEP = "a: &a [[[[[[[[[[x]]]]]]]]]]\n" + "".join(
    f"l{i}: &l{i} [[[[[[[[[[*{'a' if i == 0 else f'l{i - 1}'}]]]]]]]]]]\n" for i in range(12)
)
"""Each level only 11 deep as written, 130 deep once the aliases are expanded."""

CASES: list[tuple[str, str | bytes, str, str]] = [
    # (file name, content, a piece of the message, where: ':line:column: field: ')
    (
        "deep.yaml",
        _with("extra", "[" * 600 + "]" * 600),
        "nested more than 100 levels",
        ":42:107: ",
    ),
    ("deep.json", '{"name": ' + "[" * 5000 + "]" * 5000 + "}", "nested more than 100", ":1:109: "),
    (
        "deep_block.yaml",
        "".join("  " * i + "a:\n" for i in range(150)),
        "nested more",
        ":101:201: ",
    ),
    ("alias_deep.yaml", ALIAS_DEEP, "nested more than 100", ":1:16: l8[0][0][0]: "),
    ("cycle.yaml", "a: &r [*r]\n", "nested more than 100", ":1:4: a[0][0]"),
    ("bomb.yaml", _with("extra", BOMB), "too large", ":1:1: "),
    ("date.yaml", _with("extra", "[2024-02-30]"), "day is out of range for month", ":42:9: "),
    ("int.yaml", _with("extra", "!!int '0x'"), "'0x' cannot be read as a whole number", ":42:8: "),
    ("float.yaml", _with("extra", "!!float 'abc'"), "cannot be read as a number", ":42:8: "),
    ("bool.yaml", _with("extra", "!!bool 'maybe'"), "cannot be read as true or false", ":42:8: "),
    ("stamp.yaml", _with("extra", "!!timestamp 'x'"), "cannot be read as a date", ":42:8: "),
    ("python.yaml", _with("extra", "!!python/name:os.system"), "could not determine", ":42:8: "),
    (
        "unknown_tag.yaml",
        _with("extra", "!foo bar"),
        "could not determine a constructor",
        ":42:8: ",
    ),
    ("binary.yaml", _with("extra", "!!binary YQBi"), "binary data (!!binary)", ":42:1: extra: "),
    ("bad_binary.yaml", _with("extra", "!!binary '@@@'"), "", ":42:1: extra: "),
    ("nan.yaml", _set("above: 20%", "above: .nan"), "NaN", ":40:24: safety.abort_when[0].above: "),
    ("inf.yaml", _set("max: 1%", "max: .inf"), "infinite", ":27:36: steady_state[2].max: "),
    (
        "nan_text.yaml",
        _set("above: 20%", "above: 'nan'"),
        "finite",
        ":40:24: safety.abort_when[0].above: ",
    ),
    (
        "inf_alpha.yaml",
        _set("alpha: 0.05", "alpha: '-inf'"),
        "expected a valid number",
        ":36:14: hypothesis.alpha: ",
    ),
    (
        "nan_quantile.yaml",
        _set("quantile: 0.5", "quantile: 'NaN'"),
        "expected a valid number",
        ":25:41: steady_state[0].quantile: ",
    ),
    ("nan.json", '{"name": "x", "tags": [NaN, Infinity]}', "NaN", ":1:24: tags[0]: "),
    ("e400.json", '{"name": "x", "tags": [1e400]}', "infinite", ":1:24: tags[0]: "),
    ("bigint.yaml", _with("extra", "9" * 5000), "too many digits", ":42:8: "),
    ("bigint.json", '{"name": ' + "9" * 5000 + "}", "too large", ":1:10: "),
    (
        "bigint64.yaml",
        _set("seed: 7", "seed: " + "9" * 20),
        "too large",
        ":32:26: blast_radius.seed: ",
    ),
    (
        "bigdur.yaml",
        _set("baseline: 15s", f"baseline: {'9' * 5000}s"),
        "at most 24 digits",
        ":34:22: phases.baseline: ",
    ),
    (
        "longdur.yaml",
        _set("baseline: 15s", "baseline: 36501d"),
        "100 years",
        ":34:22: phases.baseline: ",
    ),
    (
        "bigrate.yaml",
        _set("rate: 200/s", f"rate: {'9' * 5000}/s"),
        "at most 24 digits",
        ":21:3: load.rate: ",
    ),
    (
        "nul.yaml",
        _set("owner: chaoskit maintainers", 'owner: "chaos\\0kit"'),
        "U+0000 (NUL)",
        ":10:1: owner: ",
    ),
    ("bell.yaml", _set("name: quickstart-backend-down", 'name: "\\a"'), "U+0007", ":8:1: name: "),
    (
        "nul_raw.yaml",
        _set("owner: chaoskit maintainers", "owner: chaos\0kit"),
        "U+0000 is not allowed",
        ":10:13: ",
    ),
    ("nul.json", '{"name": "a\\u0000b"}', "U+0000", ":1:2: name: "),
    ("surrogate.json", '{"name": "\\ud800"}', "surrogate", ":1:1: name: "),
    ("invalid_utf8.yaml", BASE.encode() + b"tags: \xff\n", "not UTF-8", ":42:7: "),
    ("utf16.yaml", BASE.encode("utf-16"), "not UTF-8", ":1:1: "),
    (
        "long.yaml",
        _set("name: quickstart-backend-down", "name: " + "a" * 1_000_000),
        "is not valid here",
        ":8:1: name: ",
    ),
    ("int_key.yaml", _with("1", "x"), "unknown key '1'", ":42:1: 1: "),
    ("null_key.yaml", _with("null", "x"), "unknown key 'null'", ":42:1: null: "),
    ("list_key.yaml", BASE + "[a]: b\n", "a key must be plain text", ":42:1: "),
    ("map_key.yaml", BASE + "? {a: 1}\n: b\n", "a key must be plain text", ":42:3: "),
    ("dup.yaml", BASE + "name: again\n", "duplicate key 'name'", ":42:1: name: "),
    ("dup.json", '{"name": "a", "name": "b"}', "duplicate key 'name'", ":1:15: name: "),
    ("multi.yaml", BASE + "---\nname: x\n", "single document", ":42:1: "),
    ("empty.yaml", "", "expected a mapping", ":1:1: "),
    ("empty.json", "", "not valid JSON", ":1:1: "),
    ("scalar.yaml", "hello\n", "expected a mapping", ":1:1: "),
    ("list.json", "[1, 2]", "expected a mapping", ":1:1: "),
    ("deep.toml", "a = " + "[" * 3000 + "]" * 3000, "nested more than 100", ":1:1: "),
    ("bigint.toml", "a = " + "9" * 5000, "too many digits", ":1:1: "),
    ("nan.toml", 'name = "x"\ntags = [nan]\n', "NaN", ":2:1: tags[0]: "),
]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_each_hostile_input_is_a_located_load_error(tmp_path: Path) -> None:
    """One test over every case (each test's teardown collects garbage: 50 would cost 20s)."""
    wrong = []
    for name, content, said, where in CASES:
        path = _write(tmp_path / name, content)
        try:
            load_experiment(path, environ={})
        except LoadError as exc:
            text = str(exc)
            if said not in text or f"{path}{where}" not in text or len(text) > 5000:
                wrong.append(f"{name}: {text[:300]}")  # a 1MB value is quoted cut short
        else:
            wrong.append(f"{name}: loaded")
        # a policy file and a plan reading the same bytes fail as cleanly
        for _, _, load, model in SKELETONS[-2:]:
            assert_loads_or_fails_cleanly(path, load, model)
    assert not wrong, "\n".join(wrong)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    for suffix, text in ((".yaml", BASE), (".json", json.dumps(yaml.safe_load(BASE)))):
        path = tmp_path / f"bom{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert load_experiment(path, environ={}).name == "quickstart-backend-down"


def test_on_as_a_key_is_the_word_not_true(tmp_path: Path) -> None:
    """YAML 1.1 reads a bare ``on`` as true; keys are kept as written (notify: {on: [...]})."""
    text = (ROOT / "experiments" / "gamedays" / "weekly.yaml").read_text()
    path = tmp_path / "plan.yaml"
    path.write_text(text + 'notify: {url: "https://hooks.example/x", on: [deviation]}\n')
    plan = load_plan(path)
    assert plan.notify is not None and plan.notify.on == ["deviation"]


def test_plain_number_fields_refuse_nan_and_infinity_written_as_text(tmp_path: Path) -> None:
    """A probe's ``max`` has no bounds of its own: only the finite-number rule refuses 'nan'."""
    text = (ROOT / "experiments" / "clock-skew.yaml").read_text()
    assert "    max: 10\n" in text
    for value in ("'nan'", "'inf'", '"-Infinity"', ".nan"):
        path = tmp_path / "probe.yaml"
        path.write_text(text.replace("    max: 10\n", f"    max: {value}\n"))
        with pytest.raises(LoadError) as info:
            load_experiment(path, environ={})
        assert info.value.problems[0].field == "steady_state[1].max", str(info.value)


def test_policy_thresholds_refuse_nan_and_infinity(tmp_path: Path) -> None:
    for value in (".nan", "'nan'", "-.inf", "'Infinity'"):
        path = tmp_path / "policy.yaml"
        path.write_text(f"require_abort: [{{of: probe, at_least: {value}}}]\n")
        with pytest.raises(LoadError) as info:
            find_policy(path, environ={})
        assert info.value.problems[0].field == "require_abort[0].at_least"
        assert "finite" in str(info.value) or "NaN" in str(info.value)


# ---------------------------------------------------------------------------------------------
# The fuzz: mutated skeletons written as YAML, JSON and bytes.


class Raw(str):
    """Text written into the file as it is (a YAML or JSON fragment), not as a quoted string."""


def _nested(depth: int) -> Raw:
    return Raw("[" * depth + "1" + "]" * depth)


YAML_LEAVES = [
    ".nan", ".NaN", ".inf", "-.inf", "1e400", "1.0e+400", "'nan'", "'inf'", '"-Infinity"',
    "9" * 19, "9" * 25, "9" * 400, "9" * 4301, "-" + "9" * 5000, "0x" + "f" * 5000,
    "!!int '0x'", "!!int 'x'", "!!int '1:x'", "!!float 'abc'", "!!float ''", "!!bool 'maybe'",
    "!!timestamp 'x'", "2024-02-30", "2023-13-01", "2024-02-30T25:00:00", "2024-02-28",
    "!!binary '@@@'", "!!binary YQBi", "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system", "!foo bar", "!!set {a, b}", "!!omap [a]", "!!str [a]",
    "!!map [a]", "!!seq {a: 1}", "!!null x", '"a\\0b"', '"\\x07"', '"\\e[31m"', '"\\ud800"',
    '"\\uFEFF"', "null", "~", "true", "on", "''", "[]", "{}", "100/s", "20%", "1s", "nan%",
    "9999999999999999999999999999d", "'" + "9" * 5000 + "ms'", "36501d", "-1s", "0", "-1",
    "&r [*r]", "*undefined", BOMB, "{<<: [1]}", "{<<: {a: 1}, a: 2}", "{a: 1, a: 2}",
]  # fmt: skip
JSON_LEAVES = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 25, "9" * 5000, '"\\u0000"',
    '"\\ud800"', '"\\u001b[31m"', '"nan"', '"inf"', '"2024-02-30"', "null", "true", "[]",
    "{}", '{"a": 1, "a": 2}', '"' + "a" * 100_000 + '"', '"1e400"', '"9' + "9" * 5000 + 's"',
]  # fmt: skip
ODD_KEYS = ["1", "null", "~", "on", "yes", "[a]", "{a: 1}", '"a\\0b"', "<<", "2024-02-30", ""]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["1s", "10%", "100/s", "64MiB", "${vars.x}", "${ports.a}", "x"]),
)


def leaves(syntax: str, kind: str) -> st.SearchStrategy[Any]:
    """A hostile fragment, a deep nest (around the limit, or far past Python's recursion
    limit) or a plain value of a wrong type."""
    if kind == "hostile":
        return st.sampled_from(YAML_LEAVES if syntax == "yaml" else JSON_LEAVES).map(Raw)
    if kind == "deep":
        return st.sampled_from([99, 100, 101, 150, 1000, 1500, 5000]).map(_nested)
    return st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(), scalars))


def _scalar_text(value: Any, syntax: str) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    if isinstance(value, float) and syntax == "yaml" and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and syntax == "yaml" and value in (float("inf"), -float("inf")):
        return ".inf" if value > 0 else "-.inf"
    return json.dumps(value)


def flow(node: Any, syntax: str = "yaml") -> str:
    """YAML flow style (or JSON), with Raw fragments written as they are."""
    if isinstance(node, dict):
        items = (f"{flow(k, syntax)}: {flow(v, syntax)}" for k, v in node.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(node, list):
        return "[" + ", ".join(flow(v, syntax) for v in node) + "]"
    return _scalar_text(node, syntax)


def block(node: Any, indent: int = 0) -> str:
    """YAML block style: nested mappings and lists indented, leaves in flow style."""
    pad = " " * indent
    lines = []
    items = node.items() if isinstance(node, dict) else ((None, v) for v in node)
    for key, value in items:
        head = f"{pad}{flow(key)}:" if key is not None else f"{pad}-"
        if isinstance(value, dict | list) and value:
            lines.append(head + "\n" + block(value, indent + 2))
        else:
            lines.append(f"{head} {flow(value)}")
    return "\n".join(lines)


def _mangle(raw: bytes, data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["insert", "cut", "bom", "utf16", "latin1"]))
    at = data.draw(st.integers(0, len(raw)))
    if how == "insert":
        junk = data.draw(st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\x07", b"\x1b", b"\r"]))
        return raw[:at] + junk + raw[at:]
    if how == "cut":
        return raw[:at]
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "utf16":
        return raw.decode("utf-8", "replace").encode("utf-16")
    return raw.decode("utf-8", "replace").encode("latin-1", "replace")


def _draw_file(data: st.DataObject, skeleton: Any) -> tuple[str, bytes]:
    """A mutant of ``skeleton`` as (suffix, bytes)."""
    syntax = data.draw(st.sampled_from(["yaml", "yaml-block", "json", "bytes"]))
    doc = copy.deepcopy(skeleton)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths(doc)))
        kind = data.draw(st.sampled_from(["hostile", "hostile", "deep", "wrong-type"]))
        action = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename"]))
        value = data.draw(leaves("json" if syntax == "json" else "yaml", kind))
        doc = mutate(doc, path, action, value, Raw(data.draw(st.sampled_from(ODD_KEYS))))
    if syntax == "json":
        return ".json", flow(doc, "json").encode("utf-8", "surrogatepass")
    if syntax == "yaml-block" and isinstance(doc, dict) and doc:
        text = block(doc) + "\n"
    else:
        text = flow(doc) + "\n"
    raw = text.encode("utf-8", "surrogatepass")
    if syntax == "bytes":
        raw = _mangle(raw, data)
    return data.draw(st.sampled_from([".yaml", ".json"])) if syntax == "bytes" else ".yaml", raw


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.parametrize("index", range(len(SKELETONS)), ids=[s[0] for s in SKELETONS])
@given(data=st.data())
def test_mutated_files_load_or_fail_cleanly(
    tmp_path: Path, index: int, data: st.DataObject
) -> None:
    _, skeleton, load, model = SKELETONS[index]
    suffix, raw = _draw_file(data, skeleton)
    path = tmp_path / f"mutant{suffix}"
    path.write_bytes(raw)
    assert_loads_or_fails_cleanly(path, load, model)


def test_the_unmutated_skeletons_load(tmp_path: Path) -> None:
    """The fuzz starts from valid files in every syntax: a mutant fails for its mutation."""
    for name, skeleton, load, model in SKELETONS:
        for suffix, text in ((".yaml", flow(skeleton)), (".yml", block(skeleton) + "\n"),
                             (".json", flow(skeleton, "json"))):  # fmt: skip
            path = tmp_path / f"{name.split()[0]}{suffix}"
            path.write_text(text)
            assert isinstance(load(path), model), (name, suffix)


# ---------------------------------------------------------------------------------------------
# The command: exit 0 or 2, never 70, never a traceback.

runner = CliRunner()


@settings(
    max_examples=max(EXAMPLES // 3, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_validate_command_on_mutants(tmp_path: Path, data: st.DataObject) -> None:
    index = data.draw(st.sampled_from(range(len(SKELETONS))))
    name, skeleton, _, _ = SKELETONS[index]
    suffix, raw = _draw_file(data, skeleton)
    path = tmp_path / f"mutant{suffix}"
    path.write_bytes(raw)
    args = ["validate", str(ROOT / "experiments" / "quickstart.yaml"), "--policy", str(path)]
    if name != "policy":
        args = ["validate", str(path), "--no-policy"]
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output


def test_validate_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """The real console script over every pinned case at once, and a hostile policy."""
    paths = [str(_write(tmp_path / name, content)) for name, content, _, _ in CASES]
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_blast_radius: {fraction: .nan}\n")
    env = {k: v for k, v in os.environ.items() if k != "CHAOSKIT_POLICY"}
    for args in (["--no-policy", *paths], ["--policy", str(policy), paths[0]]):
        done = subprocess.run(
            [sys.executable, "-m", "chaoskit", "validate", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "max_blast_radius.fraction" in done.stderr and "NaN" in done.stderr
