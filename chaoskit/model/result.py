"""A run's result as a model: what ``chaoskit run`` writes to ``result.json`` and what
``report``, ``gate``, ``history``, game days and the pytest plugin read back.

Serialised at the edge only (:meth:`RunResult.to_json`, :meth:`RunResult.read`). The format is
versioned by ``schema`` (``chaoskit.result/1``); every model keeps fields it does not know, so
that a file written by a newer chaoskit survives being read and written again by an older one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

__all__ = [
    "RESULT_SCHEMA",
    "FaultEvent",
    "Judged",
    "MetricJudgement",
    "MetricRecovery",
    "Phase",
    "RecoveryFailure",
    "ResultError",
    "RunResult",
    "SteadyRecord",
    "TripRecord",
]

RESULT_SCHEMA = "chaoskit.result/1"
"""The version of the result format this chaoskit writes."""


class ResultError(Exception):
    """A file that is not a result chaoskit can read; the message says why."""


class _Record(BaseModel):
    """A part of a result: fields it does not declare are kept as they are."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Phase(_Record):
    """One phase of the run, in the runner's monotonic seconds (``wall``: when it began)."""

    phase: str
    start: float
    end: float
    wall: float
    trial: int | None = None


class FaultEvent(_Record):
    """A fault injected (``inject``), taken back (``revert``), or a target found ``gone``."""

    event: str
    id: str | None = None
    fault: str | None = None
    target: str | None = None
    at: float | None = None
    wall: float | None = None
    ok: bool | None = None
    error: str | None = None
    detail: str | None = None


class TripRecord(_Record):
    """Why the safety valve stopped the run."""

    reason: str
    detail: str
    at: float | None = None
    metric: str | None = None
    value: float | None = None


class SteadyRecord(_Record):
    """The steady-state check before any fault."""

    held: bool = True
    problems: list[str] = Field(default_factory=list)


class MetricJudgement(_Record):
    """One steady-state metric's verdict, the reason in words, and the figures behind it."""

    metric: str
    verdict: str
    reason: str = ""
    effect: dict[str, Any] | None = None
    n: list[Any] | None = None
    margin: float | None = None


class MetricRecovery(_Record):
    """Time to recovery of one metric across the trials (``reason``: why it was not judged)."""

    median: float | None = None
    low: float | None = None
    high: float | None = None
    trials: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None


class RecoveryFailure(_Record):
    """A metric not back in its band in time, in one trial."""

    metric: str
    trial: int | None = None
    reason: str = ""


class Judged(_Record):
    """The run's judgement: each metric's verdict, recovery, and the overall verdict."""

    verdict: str | None = None
    """``held``, ``deviated`` or ``inconclusive``."""
    comparison: str | None = None
    """``concurrent`` (against the control group) or ``before_after``."""
    reason: str = ""
    classification: str | None = None
    score: float | None = None
    deviated: list[str] = Field(default_factory=list)
    adjusted_p: dict[str, float | None] = Field(default_factory=dict)
    metrics: list[MetricJudgement] = Field(default_factory=list)
    not_judged: dict[str, str] = Field(default_factory=dict)
    recovery: dict[str, MetricRecovery] = Field(default_factory=dict)
    recovery_failures: list[RecoveryFailure] = Field(default_factory=list)
    stopped_early: str | None = None


class RunResult(_Record):
    """Everything about one run: the experiment as run and as written, draws, phases, fault
    events, the valve's decision, the steady-state check, the judgement, the samples, and the
    environment."""

    schema_: str = Field(alias="schema", pattern=r"^chaoskit\.result/")
    run: str
    experiment: dict[str, Any]
    """The experiment as run (its model's JSON; ``report`` reads it back into one)."""
    source: dict[str, Any] | None = None
    """The experiment file as written: its ``path`` and ``text``."""
    outcome: str
    exit_code: int
    started: float | None = None
    """Wall-clock start, when no phase began (a run the watchdog had to kill)."""
    ports: dict[str, int] = Field(default_factory=dict)
    draws: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fronts: Any = None
    sequential: dict[str, Any] | None = None
    phases: list[Phase] = Field(default_factory=list)
    faults: list[FaultEvent] = Field(default_factory=list)
    safety: TripRecord | None = None
    valve: dict[str, Any] = Field(default_factory=dict)
    steady_state: SteadyRecord | None = None
    error: str | None = None
    stopped: str | None = None
    verdict: Judged | None = None
    samples: dict[str, Any] | None = None
    """Where every request is: the ``file`` beside result.json (``format`` ``arrow-ipc``),
    with the group names its codes index; older results hold the columns inline."""
    probes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per probe metric, where its readings are (as ``samples``; older results: inline)."""
    load: dict[str, Any] | None = None
    """How the load generator kept to its schedule: ``workers``, ``requests``, ``overload``
    (not sent) and the send lag of the sent ones in seconds (``send_lag_p50``, ``_p99``,
    ``_max``); a lag is already part of its request's latency."""
    event_loop: dict[str, Any] | None = None
    host: str | None = None
    chaoskit: str | None = None
    python: str | None = None

    _folder: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path | None:
        """The run's folder, which holds the samples files (None: not known)."""
        return self._folder

    def located(self, folder: Path) -> Self:
        """This result, known to belong to the run folder ``folder``."""
        self._folder = folder
        return self

    @property
    def name(self) -> str:
        """The experiment's name."""
        return str(self.experiment.get("name", ""))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, as written to result.json: the fields that were given, as given (a
        result read and written again is the same document)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def from_json(cls, data: Any, where: str = "the result") -> Self:
        """The result in ``data`` (parsed JSON); :class:`ResultError` if it is not one."""
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
            "chaoskit.result/"
        ):
            raise ResultError(f"{where} is not a chaoskit result (no 'schema' chaoskit.result/…)")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            field = ".".join(str(part) for part in first["loc"]) or "result"
            raise ResultError(
                f"{where} is not a result chaoskit can read ({field}: {first['msg']})"
            ) from None

    @classmethod
    def read(cls, path: Path) -> Self:
        """The result at ``path`` (a run's folder or its result.json)."""
        path = path / "result.json" if path.is_dir() else path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ResultError(f"cannot read {path}: {error.strerror or error}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise ResultError(
                f"{path} is not JSON: give a run's result.json (under reports/<run id>/)"
            ) from None
        return cls.from_json(data, str(path)).located(path.parent)
