"""The ``chaoskit`` command: parses arguments, calls the library, sets the exit code.

Heavy modules are imported inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Literal

import typer

from . import __version__
from .exitcodes import ExitCode

app = typer.Typer(
    name="chaoskit",
    help="Break self-healing systems on purpose, safely, and judge how they heal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Exit codes: 0 held/valid, 1 deviated, 2 invalid input or usage (nothing touched), "
        "3 aborted by the safety valve (after rollback), 4 inconclusive, 70 internal error."
    ),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chaoskit {__version__}")
        raise typer.Exit(ExitCode.HELD)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Break self-healing systems on purpose, safely, and judge how they heal."""


def _parse_vars(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=VALUE", param_hint="--var")
        values[name.strip()] = value
    return values


@app.command()
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
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Set a declared variable: NAME=VALUE (repeatable)."),
    ] = None,
    output: Annotated[
        str, typer.Option("--format", help="text (for people) or json (for tools).")
    ] = "text",
) -> None:
    """Check experiment files and the site policy; print every problem. Touches nothing."""
    from .validate import validate_paths

    if output not in ("text", "json"):
        raise typer.BadParameter(f"'{output}' is not text or json", param_hint="--format")
    fmt: Literal["text", "json"] = "json" if output == "json" else "text"
    code = validate_paths(
        paths,
        policy_path=policy,
        use_policy=not no_policy,
        variables=_parse_vars(var or []),
        output=fmt,
    )
    raise typer.Exit(code)


@app.command()
def schema(
    of: Annotated[
        str, typer.Argument(help="experiment (default) or policy.", show_default=False)
    ] = "experiment",
) -> None:
    """Print the JSON Schema of experiment (or policy) files, for editor completion."""
    from pydantic import BaseModel

    from .model.schema import json_schema

    model: type[BaseModel]
    if of == "experiment":
        from .model import Experiment

        model = Experiment
    elif of == "policy":
        from .safety.policy import Policy

        model = Policy
    else:
        raise typer.BadParameter(f"'{of}' is not experiment or policy", param_hint="OF")
    document = json_schema(model)
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def main() -> None:
    """Entry point of the console script: exit 70 with a short report on a bug."""
    try:
        app(prog_name="chaoskit")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception:  # a bug: say so plainly, keep the traceback for the report
        traceback.print_exc()
        print(
            f"chaoskit {__version__}: internal error (a bug in chaoskit, not in your input). "
            "Please report it with the traceback above.",
            file=sys.stderr,
        )
        sys.exit(ExitCode.INTERNAL)
