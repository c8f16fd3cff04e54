"""Run history in SQLite (``reports/history.db``): every run's outcome, per-metric verdicts and
time to recovery — what ``chaoskit history`` lists and ``chaoskit gate`` compares against."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model.result import RunResult

__all__ = ["HistoryError", "RunRecord", "history_db", "last_good", "record_run", "runs"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    started REAL NOT NULL,
    outcome TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    verdicts TEXT NOT NULL,
    recovery TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, started);
"""


def history_db(reports: Path) -> Path:
    """The history database of a reports folder."""
    return reports / "history.db"


class HistoryError(Exception):
    """The history database cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class RunRecord:
    """One run as the history keeps it."""

    run: str
    experiment: str
    started: float
    """Unix time the run's first phase began."""
    outcome: str
    exit_code: int
    verdicts: dict[str, str]
    """Per metric: held, deviated or inconclusive."""
    recovery: dict[str, float | None]
    """Per metric: median time to recovery in seconds (None: not recovered)."""
    result: str
    """Where its result.json is."""


@contextmanager
def _connect(db: Path) -> Iterator[sqlite3.Connection]:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(db, timeout=10)) as connection, connection:
            connection.executescript(_SCHEMA)
            yield connection
    except sqlite3.Error as error:
        raise HistoryError(f"history {db}: {error}") from None


def record_run(db: Path, result: RunResult, result_path: Path) -> RunRecord:
    """Add (or replace) the run of ``result`` in the history at ``db``."""
    verdict = result.verdict
    phases = result.phases
    entry = RunRecord(
        run=result.run,
        experiment=result.name,
        started=phases[0].wall if phases else result.started or 0.0,
        outcome=result.outcome,
        exit_code=result.exit_code,
        verdicts={m.metric: m.verdict for m in verdict.metrics} if verdict else {},
        recovery={
            name: ttr.median
            for name, ttr in (verdict.recovery if verdict else {}).items()
            if "median" in ttr.model_fields_set
        },
        result=str(result_path.resolve()),
    )
    with _connect(db) as connection:
        connection.execute(
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.run, entry.experiment, entry.started, entry.outcome, entry.exit_code,
             json.dumps(entry.verdicts), json.dumps(entry.recovery), entry.result),
        )  # fmt: skip
    return entry


def _row(row: tuple[Any, ...]) -> RunRecord:
    run, experiment, started, outcome, code, verdicts, recovery, result = row
    return RunRecord(
        run, experiment, started, outcome, code, json.loads(verdicts), json.loads(recovery), result
    )


def runs(db: Path, experiment: str | None = None, limit: int | None = None) -> list[RunRecord]:
    """Runs in the history, oldest first (the newest ``limit`` of them)."""
    if not db.exists():
        return []
    query = "SELECT * FROM runs"
    arguments: list[Any] = []
    if experiment is not None:
        query += " WHERE experiment = ?"
        arguments.append(experiment)
    query += " ORDER BY started DESC, run DESC"
    if limit is not None:
        query += " LIMIT ?"
        arguments.append(limit)
    with _connect(db) as connection:
        found = [_row(r) for r in connection.execute(query, arguments)]
    return found[::-1]


def last_good(db: Path, experiment: str, before: RunRecord) -> RunRecord | None:
    """The newest HELD run of ``experiment`` that started before ``before`` (not itself)."""
    earlier = [
        r
        for r in runs(db, experiment)
        if r.outcome == "held" and r.run != before.run and r.started <= before.started
    ]
    return earlier[-1] if earlier else None
