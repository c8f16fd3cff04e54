"""What several commands share: ``--var`` parsing, bad input as exit 2, reading result.json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..exitcodes import ExitCode

if TYPE_CHECKING:
    from ..model.result import RunResult

VarOption = Annotated[
    list[str] | None,
    typer.Option("--var", help="Set a declared variable: NAME=VALUE (repeatable)."),
]
ReportsOption = Annotated[Path, typer.Option(help="Where runs write their folders.")]


def parse_vars(items: list[str]) -> dict[str, str]:
    """``--var NAME=VALUE`` options as a mapping; a malformed one is a usage error."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"'{item}' is not NAME=VALUE", param_hint="--var")
        values[name.strip()] = value
    return values


def result_or_exit(path: Path, command: str) -> RunResult:
    """A run's result.json (or its folder's), or exit 2 saying what is wrong with it."""
    from ..report import ReportError, load_result

    try:
        return load_result(path)
    except ReportError as exc:
        typer.echo(f"chaoskit {command}: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None


@contextmanager
def exit_on_bad_input(command: str) -> Iterator[None]:
    """A file that does not load (its problems listed) or cannot be read: say so, exit 2."""
    from ..loader import LoadError

    try:
        yield
    except LoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(ExitCode.INVALID) from None
    except OSError as exc:
        typer.echo(f"chaoskit {command}: {exc}", err=True)
        raise typer.Exit(ExitCode.INVALID) from None
