"""Project tasks: ``nox -s lint typecheck tests`` is what CI runs (see README)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (unit, property, integration with real processes and sockets)."""
    session.install("-e", ".[test]")
    # One worker per core (at most 4); tests on the Docker engine share one worker
    # (tests/conftest.py). Arguments after ``--`` replace these, e.g. ``-- tests/test_cli.py``.
    default = ["--numprocesses=auto", "--maxprocesses=4", "--dist=loadgroup"]
    session.run("pytest", *(session.posargs or default))


@nox.session(python=PYTHON)
def outage(session: nox.Session) -> None:
    """The outage matrix: `chaoskit run` against a real service that breaks in every way, each
    row with and without a safety valve and a concurrent control group; and the other long
    end-to-end runs (marked ``long``) that the default suite leaves out (several minutes)."""
    session.install("-e", ".[test]")
    default = ["-m", "outage or long", "--numprocesses=2", "tests"]
    session.run("pytest", *(session.posargs or default))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6,<1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on chaoskit/."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every benchmark script; each prints a table."""
    session.install("-e", ".[test]")
    scripts = sorted(Path("benchmarks").glob("*.py"))
    for script in scripts:
        if not script.name.startswith("_"):
            session.run("python", str(script), *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The README's main job: check every example experiment against the site policy."""
    session.install("-e", ".")
    session.run("chaoskit", "validate", "experiments/")
