"""``chaoskit validate`` and ``chaoskit schema``: check and describe files, touching nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from ._shared import VarOption, parse_vars


def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Experiment files, or folders searched for .yaml/.yml/.json/.toml."),
    ],
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Site policy file (default: $CHAOSKIT_POLICY, else ./safety/default.yaml, "
            "else built-in defaults).",
        ),
    ] = None,
    no_policy: Annotated[
        bool, typer.Option("--no-policy", help="Check the files only, not the site policy.")
    ] = False,
    var: VarOption = None,
    output: Annotated[
        str, typer.Option("--format", help="text (for people) or json (for tools).")
    ] = "text",
) -> None:
    """Check experiment files and the site policy; print every problem. Touches nothing."""
    from ..validate import validate_paths

    if output not in ("text", "json"):
        raise typer.BadParameter(f"'{output}' is not text or json", param_hint="--format")
    fmt: Literal["text", "json"] = "json" if output == "json" else "text"
    code = validate_paths(
        paths,
        policy_path=policy,
        use_policy=not no_policy,
        variables=parse_vars(var or []),
        output=fmt,
    )
    raise typer.Exit(code)


def schema(
    of: Annotated[
        str,
        typer.Argument(help="experiment (default), policy or gameday.", show_default=False),
    ] = "experiment",
) -> None:
    """Print the JSON Schema of experiment, policy or game-day files, for editors.

    The same schemas are in the repository's schemas/ folder; docs/experiment-file.md says how
    to point VS Code or a JetBrains IDE at them.
    """
    if of not in SCHEMAS:
        raise typer.BadParameter(f"'{of}' is not one of {', '.join(SCHEMAS)}", param_hint="OF")
    typer.echo(json.dumps(schema_of(of), indent=2, ensure_ascii=False))


SCHEMAS = ("experiment", "policy", "gameday")
"""The kinds of file chaoskit reads, each with its JSON Schema."""


def schema_of(kind: str) -> dict[str, Any]:
    """The JSON Schema of one of :data:`SCHEMAS` (only experiments have placeholders)."""
    from pydantic import BaseModel

    from ..model.schema import json_schema

    model: type[BaseModel]
    if kind == "experiment":
        from ..model import Experiment as model
    elif kind == "policy":
        from ..safety.policy import Policy as model
    else:
        from ..model.gameday import GameDayPlan as model
    return json_schema(model, placeholders=kind == "experiment")
