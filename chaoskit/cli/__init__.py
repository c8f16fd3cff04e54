"""The ``chaoskit`` command: parses arguments, calls the library, sets the exit code.

Heavy modules are imported inside the commands that need them, so ``--help`` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from .. import __version__
from ..exitcodes import ExitCode
from . import files, plugins, proxy, results, runs
from .gameday import gameday_app
from .stack import stack_app

app = typer.Typer(
    name="chaoskit",
    help="Break self-healing systems on purpose, safely, and judge how they heal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Exit codes: 0 held/valid, 1 deviated, 2 invalid input or usage (nothing touched), "
        "3 aborted (after rollback), 4 inconclusive, 5 not steady, 6 failed (the system did not "
        "come up, a driver lost its backend), 70 a bug in chaoskit."
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


for command in (
    files.validate, files.schema, runs.run, runs.halt, runs.rollback,
    results.report, results.history, results.gate, proxy.proxy, plugins.plugins,
):  # fmt: skip
    app.command()(command)
app.add_typer(stack_app, name="stack")
app.add_typer(gameday_app, name="gameday")


def main() -> None:
    """Entry point of the console script: exit 70 with a short report on a bug."""
    # Arrow's default pool (mimalloc) keeps 10-30 MB of freed pages resident after a run's
    # samples are read back; the C library's returns them. Set before pyarrow is imported;
    # a value the user set wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
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
