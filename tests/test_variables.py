"""Variables and ${...} placeholders: the grammar, precedence, types and errors."""

from __future__ import annotations

import pytest

from chaoskit.model.variables import (
    PlaceholderError,
    Substitution,
    Variable,
    find_placeholders,
    render,
    resolve_variables,
    substitute,
)


def ctx(
    variables: dict[str, object] | None = None, env: dict[str, str] | None = None
) -> Substitution:
    return Substitution(variables or {}, env or {})  # type: ignore[arg-type]


def test_load_time_placeholders_are_filled_in_text() -> None:
    doc = {"url": "http://${env.HOST}:${vars.port}/x", "n": 3}
    out = substitute(doc, ctx({"port": 8080}, {"HOST": "127.0.0.1"}))
    assert out == {"url": "http://127.0.0.1:8080/x", "n": 3}


def test_a_whole_value_placeholder_keeps_the_value_type() -> None:
    out = substitute(
        {"replicas": "${vars.n}", "rate": "${vars.rate}"}, ctx({"n": 3, "rate": "5/s"})
    )
    assert out == {"replicas": 3, "rate": "5/s"}


def test_run_time_placeholders_and_escapes_are_kept_until_render() -> None:
    text = "http://127.0.0.1:${ports.frontend}/$${literal}"
    out = substitute({"u": text}, ctx())
    assert out == {"u": text}
    assert render(text, {"frontend": 8000}, {}) == "http://127.0.0.1:8000/${literal}"
    assert render("${run.dir}/x", {}, {"dir": "/r"}) == "/r/x"


def test_env_fallback() -> None:
    assert substitute("${env.MISSING:-abc}", ctx()) == "abc"
    assert substitute("${env.SET:-abc}", ctx(env={"SET": "x"})) == "x"


def test_keys_are_not_substituted() -> None:
    assert substitute({"${vars.a}": "b"}, ctx({"a": "z"})) == {"${vars.a}": "b"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("${nope.x}", "unknown placeholder namespace 'nope'"),
        ("${vars}", "malformed placeholder"),
        ("${vars.a", "unclosed placeholder"),
        ("${ports.a:-1}", "only allowed for env"),
        ("${run.user}", r"expected \$\{run.id\}"),
        ("${vars.undeclared}", "names no declared variable"),
        ("${env.UNSET}", "environment variable 'UNSET' is not set"),
    ],
)
def test_errors_say_what_to_write(text: str, match: str) -> None:
    with pytest.raises(PlaceholderError, match=match) as info:
        substitute({"load": {"url": text}}, ctx())
    assert info.value.path == ("load", "url")


def test_find_placeholders_lists_each_occurrence() -> None:
    found = list(find_placeholders("${vars.a}-${ports.b}-$${c}"))
    assert [(p.namespace, p.name, p.is_run_time) for p in found] == [
        ("vars", "a", False),
        ("ports", "b", True),
    ]


def test_precedence_var_over_env_over_default() -> None:
    declared = {"rate": Variable(default="10/s", env="RATE")}
    assert resolve_variables(declared, {}, {}) == {"rate": "10/s"}
    assert resolve_variables(declared, {}, {"RATE": "20/s"}) == {"rate": "20/s"}
    assert resolve_variables(declared, {"rate": "30/s"}, {"RATE": "20/s"}) == {"rate": "30/s"}


def test_a_variable_without_value_says_how_to_give_one() -> None:
    with pytest.raises(PlaceholderError, match=r"set \$TOKEN, pass --var token=VALUE"):
        resolve_variables({"token": Variable(env="TOKEN")}, {}, {})


def test_choices_are_enforced() -> None:
    declared = {"mode": Variable(default="a", choices=["a", "b"])}
    with pytest.raises(PlaceholderError, match="expected one of: a, b"):
        resolve_variables(declared, {"mode": "c"}, {})


def test_unknown_override_is_refused() -> None:
    with pytest.raises(PlaceholderError, match=r"--var typo=\.\.\. names no declared variable"):
        resolve_variables({"a": Variable(default=1)}, {"typo": "1"}, {})


def test_render_refuses_unknown_ports() -> None:
    with pytest.raises(PlaceholderError, match=r"known: api"):
        render("${ports.web}", {"api": 1}, {})
