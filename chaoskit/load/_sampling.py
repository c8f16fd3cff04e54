"""Reading a probe on a fixed interval into a time series of values and errors."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ..model.metrics import ProbeMetric
from ..units import Duration
from ._columns import BATCH_ROWS, ColumnFile, Columns
from ._errors import ProbeFailure
from ._probes import AnyProbe, ProbeReader, reader_for
from ._samples import FILE_FORMAT

__all__ = ["ProbeSampler", "ProbeSeries"]


_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "time": np.dtype(np.float64),
    "wall": np.dtype(np.float64),
    "value": np.dtype(np.float64),
    "error": np.dtype(object),
}
"""The columns of a reading (and of a probe's Arrow file): ``error`` is text or null."""


class ProbeSeries:
    """Timestamped readings of one probe: ``value`` is NaN where the reading failed, and
    ``errors`` maps those rows to what went wrong. Times are ``time.monotonic()`` seconds,
    ``wall`` the Unix time of the same instant (when each reading began).

    Once :meth:`stream_to` names a file, readings are written to it in batches and only the
    last ``keep`` seconds stay in memory; every query still sees every reading."""

    def __init__(self, name: str, *, keep: float = 600.0, batch_rows: int = BATCH_ROWS) -> None:
        self.name = name
        self._rows = Columns(_DTYPES, "time", capacity=64, keep=keep, batch_rows=batch_rows)
        self._failed = 0
        self._last_error: str | None = None

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def time(self) -> NDArray[np.float64]:
        return self._all("time")

    @property
    def wall(self) -> NDArray[np.float64]:
        return self._all("wall")

    @property
    def value(self) -> NDArray[np.float64]:
        return self._all("value")

    @property
    def errors(self) -> dict[int, str]:
        """The failed readings: row to error message."""
        column = self._all("error")
        return {int(i): str(column[i]) for i in np.flatnonzero(column != None)}  # noqa: E711

    @property
    def failed(self) -> int:
        """How many readings failed."""
        return self._failed

    @property
    def last_error(self) -> str | None:
        """The message of the last failed reading."""
        return self._last_error

    @property
    def latest(self) -> float | None:
        """The last reading's value (NaN if it failed); None before any reading."""
        rows = self._rows
        return float(rows.get(rows.size - 1, "value")) if rows.size else None

    @property
    def last_at(self) -> float:
        """When the last reading began (monotonic; -inf before any)."""
        rows = self._rows
        return float(rows.get(rows.size - 1, "time")) if rows.size else -math.inf

    def _all(self, name: str) -> NDArray[Any]:
        return self._rows.read(0, len(self._rows))[name]

    @property
    def file(self) -> Path | None:
        """The Arrow IPC file the readings are written to, if any."""
        return None if self._rows.file is None else self._rows.file.path

    def stream_to(self, path: Path) -> None:
        """Write readings to a new Arrow IPC file at ``path`` from now on (before the first)."""
        self._rows.stream_to(path)

    def close(self) -> None:
        """Write every reading to the file and finish it; queries go on working."""
        self._rows.close()

    def add(self, at: float, wall: float, value: float | None, error: str | None = None) -> None:
        """Append a reading: a value, or an error message (then the value is NaN)."""
        if (value is None) == (error is None):
            raise ValueError("give a value or an error, not both or neither")
        rows = self._rows
        if rows.size and at < rows.get(rows.size - 1, "time"):
            raise ValueError("readings must be added in time order")
        row = rows.add()
        rows.put(row, "time", at)
        rows.put(row, "wall", wall)
        rows.put(row, "value", math.nan if value is None else value)
        rows.put(row, "error", error)
        if error is not None:
            self._failed += 1
            self._last_error = error
        rows.settle(rows.size)

    def window(self, start: float | None = None, end: float | None = None) -> ProbeSeries:
        """The readings taken in ``[start, end)`` (monotonic seconds; open ends allowed), in
        memory."""
        rows = self._rows
        columns = rows.read(rows.find(start, default=0), rows.find(end, default=rows.size))
        return ProbeSeries.of(self.name, columns)

    @classmethod
    def of(cls, name: str, columns: dict[str, NDArray[Any]]) -> ProbeSeries:
        """A series holding ``columns`` (time, wall, value and error, of equal length)."""
        part = cls(name)
        part._rows = Columns.holding(_DTYPES, "time", columns)
        errors = [e for e in columns["error"] if e is not None]
        part._failed = len(errors)
        part._last_error = errors[-1] if errors else None
        return part

    def stored(self) -> dict[str, Any]:
        """What a result file says of this series: its file (in the same folder), format,
        readings and failures; readings never written to a file, inline (:meth:`to_json`)."""
        if self.file is None:
            return self.to_json()
        record: dict[str, Any] = {
            "name": self.name,
            "file": self.file.name,
            "format": FILE_FORMAT,
            "readings": len(self),
            "failed": self._failed,
            "last_error": self._last_error,
        }
        if self._rows.unwritten is not None:
            record["unwritten"] = (
                f"only {self._rows.written} readings were written: {self._rows.unwritten}"
            )
        return record

    @classmethod
    def load(cls, record: dict[str, Any], folder: Path | None) -> ProbeSeries:
        """The series a result file holds: in a file in ``folder`` (see :meth:`stored`), or
        inline as columns (results written before samples files); OSError or ValueError if it cannot
        be read."""
        name = str(record.get("name", ""))
        if "file" not in record:
            errors = record.get("error") or [None] * len(record["time"])
            return cls.of(
                name,
                {
                    "time": np.asarray(record["time"], np.float64),
                    "wall": np.asarray(record["wall"], np.float64),
                    "value": np.array(
                        [math.nan if v is None else v for v in record["value"]], np.float64
                    ),
                    "error": np.array(errors, dtype=object),
                },
            )
        if folder is None or record.get("format") != FILE_FORMAT:
            raise ValueError(f"cannot read probe readings stored as {record.get('format')!r}")
        series = cls(name)
        series._rows = Columns.from_file(ColumnFile.open(folder / record["file"], _DTYPES, "time"))
        series._failed = int(record.get("failed") or 0)
        series._last_error = record.get("last_error")
        return series

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able columns; a failed reading has value null and its error message."""
        columns = self._rows.read(0, len(self._rows))
        return {
            "name": self.name,
            "time": columns["time"].tolist(),
            "wall": columns["wall"].tolist(),
            "value": [None if math.isnan(v) else v for v in columns["value"].tolist()],
            "error": columns["error"].tolist(),
        }


class ProbeSampler:
    """Reads a probe at ``start + k * interval``; a reading that overruns skips the missed
    ticks rather than bunching readings up afterwards."""

    def __init__(
        self,
        probe: AnyProbe,
        interval: Duration | float,
        *,
        name: str | None = None,
        series: ProbeSeries | None = None,
    ) -> None:
        seconds = interval.seconds if isinstance(interval, Duration) else float(interval)
        if not seconds > 0:
            raise ValueError(f"interval must be above 0 seconds, got {interval}")
        self.reader: ProbeReader = reader_for(probe)
        self.interval = seconds
        self.series = series if series is not None else ProbeSeries(name or probe.type)
        self._stopped = asyncio.Event()

    @classmethod
    def for_metric(cls, metric: ProbeMetric) -> ProbeSampler:
        """The sampler of a steady-state probe metric (its probe, interval and name)."""
        return cls(metric.probe, metric.interval, name=metric.name)

    def stop(self) -> None:
        """End :meth:`run` after the reading in progress (cancel the task to end it at once)."""
        self._stopped.set()

    async def run(self, duration: float | None = None) -> ProbeSeries:
        """Read every ``interval`` for ``duration`` seconds or until :meth:`stop`."""
        start = time.monotonic()
        wall0 = time.time() - (time.monotonic() - start)
        end = math.inf if duration is None else start + duration
        tick = 0
        try:
            while not self._stopped.is_set():
                due = start + tick * self.interval
                if due >= end:
                    break
                if not await self._wait_until(due):
                    break
                began = time.monotonic()
                try:
                    value: float | None = await self.reader.read()
                    error = None
                except ProbeFailure as exc:
                    value, error = None, str(exc)
                self.series.add(began, wall0 + (began - start), value, error)
                tick = max(tick + 1, math.floor((time.monotonic() - start) / self.interval) + 1)
        finally:
            await self.reader.aclose()
        return self.series

    async def _wait_until(self, when: float) -> bool:
        """Sleep until ``when``; False when stopped first."""
        delay = when - time.monotonic()
        if delay <= 0:
            return not self._stopped.is_set()
        try:
            async with asyncio.timeout(delay):
                await self._stopped.wait()
        except TimeoutError:
            return True
        return False
