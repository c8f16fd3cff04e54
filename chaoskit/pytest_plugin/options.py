"""The plugin's command-line options and the session's report folder."""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["pytest_addoption", "pytest_terminal_summary", "report_dir"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaoskit", "chaos experiments")
    group.addoption(
        "--chaos-report-dir",
        default=None,
        help="Where experiment runs and the chaos fixtures' journals write their folders and "
        "history.db (default: chaos-reports under pytest's temporary directory).",
    )
    group.addoption(
        "--chaos-inconclusive",
        choices=("skip", "fail", "pass"),
        default="skip",
        help="How an INCONCLUSIVE experiment is reported (default: skip, with the reason).",
    )
    group.addoption(
        "--chaos-policy", default=None, help="Site policy file (default: as for chaoskit run)."
    )


_REPORTS = pytest.StashKey[Path]()


def report_dir(config: pytest.Config) -> Path:
    """This session's report folder: ``--chaos-report-dir`` (relative to where pytest was
    started), else ``chaos-reports`` under pytest's temporary directory, made on first use."""
    if _REPORTS not in config.stash:
        given = config.getoption("--chaos-report-dir")
        if given is not None:
            folder = config.invocation_params.dir / given
        else:
            # The session's factory (the tmp_path_factory fixture's), which pytest attaches to
            # the config for plugins; it numbers the folders and keeps the last few sessions'.
            factory: pytest.TempPathFactory | None = getattr(config, "_tmp_path_factory", None)
            if factory is None:
                raise pytest.UsageError("pytest's tmpdir plugin is off: give --chaos-report-dir")
            folder = factory.mktemp("chaos-reports", numbered=False)
        config.stash[_REPORTS] = folder
    return config.stash[_REPORTS]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the report folder at the end, if the session used it."""
    folder = terminalreporter.config.stash.get(_REPORTS, None)
    if folder is not None:
        terminalreporter.write_line(f"chaoskit reports: {folder}")
