"""The example experiments: all valid under the site policy, every fault type shown, and the
emitted JSON Schema accepts every one of them."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml

from chaoskit.loader import EXTENSIONS, load_experiment, load_model
from chaoskit.model import Experiment
from chaoskit.model.faults import FaultType
from chaoskit.model.schema import json_schema
from chaoskit.safety.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
PLANS = sorted((ROOT / "experiments" / "gamedays").glob("*.yaml"))
EXAMPLES = sorted(
    p for p in (ROOT / "experiments").rglob("*") if p.suffix in EXTENSIONS and p not in PLANS
)


def raw(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        return tomllib.loads(text)
    return yaml.safe_load(text)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_under_the_site_policy(path: Path) -> None:
    experiment = load_experiment(path, environ={})
    policy = load_model(ROOT / "safety" / "default.yaml", Policy)
    assert policy.check(experiment) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_json_schema_accepts_the_example(path: Path) -> None:
    jsonschema.validate(raw(path), json_schema(Experiment))


def test_every_fault_type_has_an_example() -> None:
    used = {f.type for p in EXAMPLES for f in load_experiment(p, environ={}).faults}
    assert used == set(get_args(FaultType))


def test_examples_come_in_every_file_format() -> None:
    assert {p.suffix for p in EXAMPLES} >= {".yaml", ".json", ".toml"}
    assert (ROOT / "experiments" / "quickstart.yaml") in EXAMPLES


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    schema = json_schema(Experiment)
    doc = raw(ROOT / "experiments" / "quickstart.yaml")
    doc["faults"][0]["latencyy"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_json_schema_accepts_placeholders_in_typed_fields() -> None:
    schema = json_schema(Experiment)
    doc = raw(ROOT / "experiments" / "quickstart.yaml")
    doc["system"]["stack"]["replicas"] = "${vars.n}"
    doc["load"]["rate"] = "${env.RATE:-10/s}"
    jsonschema.validate(doc, schema)
    doc["load"]["rate"] = "${nope.x}"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_json_schema_carries_field_docs_and_readable_defaults() -> None:
    schema = json_schema(Experiment)
    latency = schema["$defs"]["LatencyFault"]["properties"]["latency"]
    assert latency["description"].startswith("Added delay per chunk")
    assert schema["$defs"]["Phases"]["properties"]["baseline"]["default"] == "30s"
    assert schema["$defs"]["AbortCondition"]["properties"]["for"]["default"] == "0s"


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_game_day_plan_is_valid_and_names_valid_experiments(path: Path) -> None:
    from chaoskit.gameday.plan import load_plan

    plan = load_plan(path)
    for name in plan.experiments:
        assert (path.parent / name).resolve() in EXAMPLES
