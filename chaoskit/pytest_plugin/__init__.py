"""The pytest plugin (entry point ``pytest11``): ``pytest experiments/`` runs experiment files as
test items (HELD passes, DEVIATED fails with the summary, INCONCLUSIVE is skipped unless
``--chaos-inconclusive`` says otherwise), and fixtures break things inside ordinary tests:

- ``chaos_proxy``: an embedded Toxiproxy-compatible server for the session (``.url``);
- ``toxiproxy``: the Toxiproxy driver for it (async);
- ``chaos``: context managers that apply a fault and always take it back, e.g.
  ``with chaos.latency("backend", "300ms"):`` or ``with chaos.crash("backend-1"):``. Each
  fault is journaled before it is applied (``--chaos-report-dir``/``pytest-*``), and a
  watchdog process reverts what is left if pytest itself is killed.

Reports and journals go under ``--chaos-report-dir``, by default a folder under pytest's
temporary directory (kept for the last few sessions, as ``tmp_path`` is). Skips and failures
name the experiment file's ``file:line:column``, as ``chaoskit validate`` does.

``options`` (command line, report folder), ``experiments`` (files as tests) and ``fixtures``;
pytest finds the hooks and fixtures here, where they are gathered. Everything heavy is imported
when used, so the plugin costs pytest nothing when idle.
"""

from __future__ import annotations

from .experiments import (
    ExperimentFailure,
    ExperimentFile,
    ExperimentItem,
    pytest_collect_file,
    pytest_runtest_makereport,
)
from .fixtures import Chaos, ChaosJournal, chaos, chaos_journal, chaos_proxy, toxiproxy
from .options import pytest_addoption, pytest_terminal_summary, report_dir

__all__ = [
    "Chaos",
    "ChaosJournal",
    "ExperimentFailure",
    "ExperimentFile",
    "ExperimentItem",
    "chaos",
    "chaos_journal",
    "chaos_proxy",
    "pytest_addoption",
    "pytest_collect_file",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
    "report_dir",
    "toxiproxy",
]
