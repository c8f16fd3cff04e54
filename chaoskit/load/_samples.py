"""Per-request samples in column arrays, kept in due order: one row per scheduled request."""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from ._columns import BATCH_ROWS, ColumnFile, Columns

__all__ = ["FILE_FORMAT", "ErrorClass", "RequestSamples", "Samples"]


class ErrorClass(IntEnum):
    """How a request ended; ``NONE`` is a response with a status below 400."""

    NONE = 0
    TIMEOUT = 1
    """No complete answer within ``load.timeout``."""
    CONNECT = 2
    """The connection could not be opened (refused, unreachable, name not resolved)."""
    RESET = 3
    """The connection broke after it was opened (reset, closed before the answer ended)."""
    HTTP_4XX = 4
    HTTP_5XX = 5
    OVERLOAD = 6
    """Not sent: ``max_in_flight`` requests were already outstanding at its due time."""
    PROTOCOL = 7
    """The answer was not valid HTTP."""
    OTHER = 8

    @property
    def label(self) -> str | None:
        """The name used in dumps and reports; None for no error."""
        return None if self is ErrorClass.NONE else self.name.lower()


_PENDING: Final = -1
"""Error code of a row whose request has not finished (excluded from every query)."""

_ALWAYS_ERRORS: Final = [int(ErrorClass.OVERLOAD), int(ErrorClass.PROTOCOL), int(ErrorClass.OTHER)]
_METRIC_WORDS = {
    "timeout": (ErrorClass.TIMEOUT,),
    "connect": (ErrorClass.CONNECT, ErrorClass.RESET),
}


@dataclass(frozen=True, eq=False)
class Samples:
    """The finished requests of one time window, in due order (arrays are copies).

    Times are monotonic seconds (``time.monotonic()``), ``wall`` is Unix time of the same
    instant, ``latency`` runs from the due time to the end of the answer (NaN when not sent),
    ``status`` is 0 without an answer, ``group`` indexes ``group_names`` (-1: untagged).
    """

    start: float
    end: float
    due: NDArray[np.float64]
    wall: NDArray[np.float64]
    latency: NDArray[np.float64]
    send_lag: NDArray[np.float32]
    """How late the request left the generator after its due time (a generator health figure;
    it is already part of ``latency``)."""
    status: NDArray[np.int16]
    error: NDArray[np.int8]
    group: NDArray[np.int16]
    group_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.due.size)

    def where(self, keep: NDArray[np.bool_]) -> Samples:
        """The requests ``keep`` marks, in the same window."""
        return self._rows(self.start, self.end, keep)

    def split(self, edges: Sequence[float]) -> list[Samples]:
        """The requests due between consecutive ``edges`` (ascending), one window each
        (sharing this window's arrays)."""
        cuts = np.searchsorted(self.due, edges, side="left").tolist()
        return [self._rows(edges[i], edges[i + 1], slice(lo, hi))
                for i, (lo, hi) in enumerate(itertools.pairwise(cuts))]  # fmt: skip

    def _rows(self, start: float, end: float, rows: slice | NDArray[np.bool_]) -> Samples:
        """The requests ``rows`` picks (a mask copies them, a slice shares them), over
        ``[start, end)``."""
        return Samples(
            start, end, self.due[rows], self.wall[rows], self.latency[rows],
            self.send_lag[rows], self.status[rows], self.error[rows], self.group[rows],
            self.group_names,
        )  # fmt: skip

    def of_answered(self) -> Samples:
        """The requests that got an answer (any status)."""
        return self.where(self.status > 0)

    def between(self, start: float, end: float) -> Samples:
        """The requests due in ``[start, end)``, as a window of that span."""
        keep = (self.due >= start) & (self.due < end)
        return replace(self.where(keep), start=start, end=end)

    def of_group(self, group: str | Collection[str]) -> Samples:
        """The requests of one group tag or several."""
        tags = [group] if isinstance(group, str) else list(group)
        codes = [self.group_names.index(t) for t in tags if t in self.group_names]
        return self.where(np.isin(self.group, codes))

    @property
    def ok(self) -> NDArray[np.bool_]:
        """Requests answered with a status below 400."""
        answered: NDArray[np.bool_] = self.error == ErrorClass.NONE
        return answered

    def errors(self, kinds: Iterable[str] = ("5xx", "timeout", "connect")) -> NDArray[np.bool_]:
        """Per request, whether it counts as an error under ``kinds``.

        ``kinds`` uses ``ErrorRateMetric.errors`` words: status classes (``5xx``), codes
        (``429``), ``timeout``, ``connect`` (refused or reset). Requests without a usable answer
        for any other reason (``overload``: not sent, ``protocol``, ``other``) always count.
        """
        mask: NDArray[np.bool_] = np.isin(self.error, _ALWAYS_ERRORS)
        for kind in kinds:
            if kind in _METRIC_WORDS:
                mask |= np.isin(self.error, [int(c) for c in _METRIC_WORDS[kind]])
            elif len(kind) == 3 and kind[0] in "12345" and kind[1:] == "xx":
                low = int(kind[0]) * 100
                mask |= (self.status >= low) & (self.status < low + 100)
            elif len(kind) == 3 and kind.isdigit():
                mask |= self.status == int(kind)
            else:
                raise ValueError(
                    f"unknown error kind '{kind}': use a status class such as '5xx', a code "
                    "such as '429', 'timeout' or 'connect'"
                )
        return mask

    @property
    def ended(self) -> NDArray[np.float64]:
        """When each request's outcome was known (monotonic): its answer's end, its deadline for
        one that timed out, its due time for one never sent."""
        ended: NDArray[np.float64] = self.due + np.nan_to_num(self.latency, nan=0.0)
        return ended

    def censored_latencies(self, ceiling: float) -> NDArray[np.float64]:
        """Latency of every request, in due order, a failed one counted at ``ceiling`` (the
        load's timeout): one that got no answer, was never sent, or was answered 5xx. An
        answer below 400 (or 4xx) counts as measured, capped at ``ceiling``."""
        failed = self.errors() | np.isnan(self.latency)
        measured = np.minimum(np.nan_to_num(self.latency, nan=ceiling), ceiling)
        censored: NDArray[np.float64] = np.where(failed, ceiling, measured)
        return censored

    def latencies(self, of: Literal["ok", "answered", "sent"] = "answered") -> NDArray[np.float64]:
        """Latency in seconds per request, in due order, of the requests answered below 400
        (``ok``), answered at all (``answered``, the default), or sent (``sent``: timeouts and
        broken connections too, with the time it took to give up)."""
        if of == "ok":
            return self.latency[self.ok]
        if of == "answered":
            return self.latency[self.status > 0]
        if of == "sent":
            return self.latency[~np.isnan(self.latency)]
        raise ValueError(f"of must be 'ok', 'answered' or 'sent', got {of!r}")

    def count(self, error: ErrorClass) -> int:
        """How many requests ended with ``error``."""
        return int(np.count_nonzero(self.error == error))

    def throughput(self, bucket: float = 1.0) -> NDArray[np.float64]:
        """Successful answers per second in consecutive ``bucket``-second slices of the window,
        counted when each answer ended (a stall shows as a dip followed by a burst)."""
        if bucket <= 0:
            raise ValueError(f"bucket must be above 0 seconds, got {bucket}")
        slices = max(1, math.ceil((self.end - self.start) / bucket - 1e-9))
        ended = (self.due + self.latency)[self.ok]
        counts, _ = np.histogram(
            ended, bins=slices, range=(self.start, self.start + slices * bucket)
        )
        return counts.astype(np.float64) / bucket

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able columns (NaN as null, error and group as names or null)."""
        labels = [c.label for c in ErrorClass]
        return {
            "start": self.start,
            "end": self.end,
            "due": self.due.tolist(),
            "wall": self.wall.tolist(),
            "latency": [None if math.isnan(v) else v for v in self.latency.tolist()],
            "send_lag": [round(v, 6) for v in self.send_lag.tolist()],
            "status": [v or None for v in self.status.tolist()],
            "error": [labels[v] for v in self.error.tolist()],
            "group": [self.group_names[v] if v >= 0 else None for v in self.group.tolist()],
        }


_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "due": np.dtype(np.float64),
    "wall": np.dtype(np.float64),
    "latency": np.dtype(np.float64),
    "send_lag": np.dtype(np.float32),
    "status": np.dtype(np.int16),
    "error": np.dtype(np.int8),
    "group": np.dtype(np.int16),
}
"""The columns of a request row (and of ``requests.arrow``): ``error`` holds ``ErrorClass``
values (-1: never finished), ``group`` indexes the group names (-1: untagged)."""

FILE_FORMAT: Final = "arrow-ipc"
_SETTLE_EVERY: Final = 1024
"""Rows reserved between two looks for finished rows to write to the file."""


class RequestSamples:
    """Every request one load generator scheduled, in due order: row ``i`` is request ``i``.

    Rows live in :class:`~._columns.Columns`; once :meth:`stream_to` names a file, finished
    rows are written to it in batches and only the last ``keep`` seconds stay in memory, so
    memory is flat however long the run, while every query still sees every row. Rows of
    requests still in flight are left out of every query.
    """

    def __init__(
        self,
        capacity: int = 4096,
        *,
        fallback_group: str | None = None,
        keep: float = 60.0,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.fallback_group = fallback_group
        """The group of a request that carries none (no answer, or no group header): with a
        concurrent control, the runner sets ``experiment``, so a failure nobody can attribute
        never helps the claim that the system held."""
        self._rows = Columns(_DTYPES, "due", capacity=capacity, keep=keep, batch_rows=batch_rows)
        self._settle_every = min(_SETTLE_EVERY, batch_rows)
        self._group_codes: dict[str, int] = {}
        self._pending = 0
        self._finished_below = 0
        """Every row below this one is finished (rows from it on may be in flight)."""
        self._first_due: float | None = None
        self._last_due = -math.inf
        self.first_errors: dict[str, str] = {}
        """The first message seen for each error class, to show what went wrong."""

    def __len__(self) -> int:
        """Finished requests (in flight ones are not counted)."""
        return len(self._rows) - self._pending

    @property
    def first_due(self) -> float | None:
        """When the first request was due (the load's start), None before any."""
        return self._first_due

    @property
    def pending(self) -> int:
        """Requests scheduled but not finished yet."""
        return self._pending

    @property
    def group_names(self) -> tuple[str, ...]:
        """Group tags seen so far, in order of first appearance."""
        return tuple(self._group_codes)

    @property
    def file(self) -> Path | None:
        """The Arrow IPC file the rows are written to, if any."""
        return None if self._rows.file is None else self._rows.file.path

    def stream_to(self, path: Path) -> None:
        """Write finished rows to a new Arrow IPC file at ``path`` from now on, keeping only
        the recent ones in memory (call before the first request)."""
        self._rows.stream_to(path)

    def close(self) -> None:
        """Write every row to the file and finish it (rows still in flight are written as
        never finished); queries go on working."""
        self._rows.close()

    def reserve(self, due: float, wall: float) -> int:
        """Add a row for a request due at ``due`` (monotonic) / ``wall``; its row number."""
        rows = self._rows
        if rows.size and due < self._last_due:
            raise ValueError("rows must be reserved in due order")
        row = rows.add()
        at, arrays = row - rows.base, rows.arrays
        arrays["due"][at] = due
        arrays["wall"][at] = wall
        arrays["latency"][at] = math.nan
        arrays["send_lag"][at] = 0.0
        arrays["status"][at] = 0
        arrays["error"][at] = _PENDING
        arrays["group"][at] = -1
        self._last_due = due
        if self._first_due is None:
            self._first_due = due
        self._pending += 1
        if row % self._settle_every == 0:
            self._settle()
        return row

    def finish(
        self,
        row: int,
        *,
        latency: float,
        status: int = 0,
        error: ErrorClass = ErrorClass.NONE,
        group: str | None = None,
        send_lag: float = 0.0,
        message: str | None = None,
    ) -> None:
        """Record how the request of ``row`` ended."""
        rows = self._rows
        at, arrays = row - rows.base, rows.arrays
        if row < self._finished_below or arrays["error"][at] != _PENDING:
            raise ValueError(f"row {row} is already finished")
        arrays["latency"][at] = latency
        arrays["send_lag"][at] = send_lag
        arrays["status"][at] = status
        arrays["error"][at] = error
        group = group if group is not None else self.fallback_group
        if group is not None:
            arrays["group"][at] = self._code(group)
        if message is not None and error.label is not None:
            self.first_errors.setdefault(error.label, message)
        self._pending -= 1

    def _settle(self) -> None:
        """Move the finished mark past the rows that have finished; write full batches."""
        rows = self._rows
        errors = rows.column("error")[self._finished_below - rows.base :]
        waiting = np.flatnonzero(errors == _PENDING)
        self._finished_below += int(waiting[0]) if waiting.size else errors.size
        rows.settle(self._finished_below)

    def _code(self, group: str) -> int:
        code = self._group_codes.get(group)
        if code is None:
            code = self._group_codes[group] = len(self._group_codes)
        return code

    def window(
        self,
        start: float | None = None,
        end: float | None = None,
        *,
        group: str | Collection[str] | None = None,
    ) -> Samples:
        """Finished requests due in ``[start, end)`` (monotonic seconds; open ends allowed),
        of one group tag or several (default: every request, tagged or not)."""
        lo, hi = self._span(start, end)
        columns = self._rows.read(lo, hi)
        view = self._view(columns, columns["error"] != _PENDING, start=start, end=end)
        return view if group is None else view.of_group(group)

    def chunks(self) -> Iterator[Samples]:
        """Every finished request, a batch of rows at a time (to sum a whole run up in the
        same memory however long it was)."""
        rows = self._rows
        for lo in range(0, rows.size, rows.batch_rows):
            columns = rows.read(lo, min(lo + rows.batch_rows, rows.size))
            yield self._view(columns, columns["error"] != _PENDING, start=None, end=None)

    def waiting(self, start: float, now: float) -> NDArray[np.float64]:
        """How long each request due in ``[start, now)`` and not finished has waited so far."""
        lo, hi = self._span(start, now)
        rows = self._rows
        lo = max(lo, self._finished_below)  # the rows below are finished (and maybe written)
        due = rows.column("due")[lo - rows.base : hi - rows.base]
        pending = rows.column("error")[lo - rows.base : hi - rows.base] == _PENDING
        ages: NDArray[np.float64] = now - due[pending]
        return ages

    def as_of(
        self,
        now: float,
        timeout: float,
        start: float | None = None,
        *,
        group: str | Collection[str] | None = None,
    ) -> Samples:
        """Requests due in ``[start, now)`` whose outcome is known at ``now``: the finished ones,
        and those still waiting past their deadline (due + ``timeout``), shown as timeouts at
        that deadline (in the fallback group) — a hang is a failure from its deadline on, not
        missing data until the client gives up."""
        lo, hi = self._span(start, now)
        columns = self._rows.read(lo, hi)
        pending = columns["error"] == _PENDING
        overdue = pending & (columns["due"] + timeout <= now)
        fallback = -1 if self.fallback_group is None else self._code(self.fallback_group)
        view = self._view(columns, ~pending | overdue, start=start, end=now)
        late = overdue[~pending | overdue]  # the view's arrays are copies: safe to fill in
        view.latency[late] = timeout
        view.error[late] = int(ErrorClass.TIMEOUT)
        view.group[late] = fallback
        return view if group is None else view.of_group(group)

    def _span(self, start: float | None, end: float | None) -> tuple[int, int]:
        """The rows due in ``[start, end)``."""
        rows = self._rows
        return rows.find(start, default=0), rows.find(end, default=rows.size)

    def _view(
        self,
        columns: dict[str, NDArray[Any]],
        keep: NDArray[np.bool_],
        *,
        start: float | None,
        end: float | None,
    ) -> Samples:
        due = columns["due"]
        first = float(due[0]) if due.size else 0.0
        return Samples(
            start=first if start is None else start,
            end=(float(due[-1]) if due.size else first) if end is None else end,
            due=due[keep],
            wall=columns["wall"][keep],
            latency=columns["latency"][keep],
            send_lag=columns["send_lag"][keep],
            status=columns["status"][keep],
            error=columns["error"][keep],
            group=columns["group"][keep],
            group_names=self.group_names,
        )

    def stored(self) -> dict[str, Any]:
        """What a result file says of these samples: the file that holds them (its name, in
        the same folder), its format and rows, the group names its codes index, and the first
        error message of each class; samples never written to a file, inline (:meth:`to_json`)."""
        if self.file is None:
            return self.to_json()
        record: dict[str, Any] = {
            "file": self.file.name,
            "format": FILE_FORMAT,
            "requests": len(self),
            "groups": list(self.group_names),
            "first_errors": dict(self.first_errors),
        }
        if self._rows.unwritten is not None:
            record["unwritten"] = (
                f"only {self._rows.written} rows were written: {self._rows.unwritten}"
            )
        return record

    @classmethod
    def load(cls, record: dict[str, Any], folder: Path | None) -> RequestSamples:
        """The samples a result file holds: written to a file in ``folder`` (see
        :meth:`stored`), or inline as columns (results written before samples files); OSError or
        ValueError if they cannot be read."""
        if "file" not in record:
            return cls.from_json(record)
        if folder is None or record.get("format") != FILE_FORMAT:
            raise ValueError(f"cannot read samples stored as {record.get('format')!r}")
        file = ColumnFile.open(folder / record["file"], _DTYPES, "due")
        samples = cls()
        samples._rows = Columns.from_file(file)
        samples._finished_below = file.rows
        samples._group_codes = {name: i for i, name in enumerate(record.get("groups") or [])}
        samples.first_errors.update(record.get("first_errors") or {})
        samples._first_due = file.first_key[0] if file.rows else None
        return samples

    def to_json(self) -> dict[str, Any]:
        """Every finished request as plain JSON-able columns, plus the first error messages
        (how results held samples before they were written to a file)."""
        return {**self.window().to_json(), "first_errors": dict(self.first_errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestSamples:
        """The samples :meth:`to_json` wrote (e.g. an older result file's), to query them."""
        by_label = {c.label: c for c in ErrorClass}
        due = data["due"]
        samples = cls(capacity=len(due))
        for i, at in enumerate(due):
            row = samples.reserve(at, data["wall"][i])
            latency = data["latency"][i]
            samples.finish(
                row,
                latency=math.nan if latency is None else latency,
                status=data["status"][i] or 0,
                error=by_label[data["error"][i]],
                group=data["group"][i],
                send_lag=data["send_lag"][i],
            )
        samples.first_errors.update(data.get("first_errors") or {})
        return samples
