"""Rows of typed columns kept in key order for a whole run: the recent ones in memory, the
settled older ones streamed to an Arrow IPC file, so memory stays flat however long the run.

Arrow IPC, because batches are appended as they come with no re-encoding, stay readable one by
one while the file is still being written (Parquet can be read only once its footer is), and the
finished file is a standard Arrow file any Arrow reader opens.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

__all__ = ["BATCH_ROWS", "ColumnFile", "Columns", "Compression", "Side"]

Side = Literal["left", "right"]
Compression = Literal["lz4", "zstd"]

BATCH_ROWS: Final = 16_384
"""Rows per batch written to the file (8 s of requests at 2,000/s)."""

_CACHED_BATCHES: Final = 8
"""Batches kept decoded after a read (a timeline walks a window one second at a time)."""

_TEXT = np.dtype(object)
"""A column of text or None (a probe's error messages)."""


def _arrow_type(dtype: np.dtype[Any]) -> pa.DataType:
    return pa.string() if dtype == _TEXT else pa.from_numpy_dtype(dtype)


class ColumnFile:
    """An Arrow IPC file of record batches in key order, with each batch's first row and key
    range: written batch by batch and readable while written, or opened when finished (or cut
    short: a run killed while writing leaves its last whole batch readable)."""

    def __init__(self, path: Path, dtypes: Mapping[str, np.dtype[Any]], key: str) -> None:
        self.path = path
        self.dtypes = dict(dtypes)
        self.key = key
        self.schema = pa.schema([(name, _arrow_type(dt)) for name, dt in self.dtypes.items()])
        self.rows = 0
        self.first_row: list[int] = []
        self.first_key: list[float] = []
        self.last_key: list[float] = []
        self._ends: list[int] = []
        """Byte offset just past each batch (batch k starts where batch k-1 ends)."""
        self._start = 0
        """Byte offset of the first batch, past the magic bytes and the schema."""
        self._sink: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._reader: pa.OSFile | None = None
        self._cache: OrderedDict[int, dict[str, NDArray[Any]]] = OrderedDict()

    @classmethod
    def create(
        cls,
        path: Path,
        dtypes: Mapping[str, np.dtype[Any]],
        key: str,
        *,
        compression: Compression | None,
    ) -> ColumnFile:
        """A new, empty file at ``path`` to append batches to (its folder must exist)."""
        file = cls(path, dtypes, key)
        file._sink = pa.OSFile(str(path), "wb")
        options = pa.ipc.IpcWriteOptions(compression=compression)
        file._writer = pa.ipc.new_file(file._sink, file.schema, options=options)
        return file

    @classmethod
    def open(cls, path: Path, dtypes: Mapping[str, np.dtype[Any]], key: str) -> ColumnFile:
        """The file a run wrote at ``path``, indexed batch by batch; OSError if it cannot be
        read, ValueError if it is not such a file."""
        file = cls(path, dtypes, key)
        source = file._source()
        if source.read(6) != b"ARROW1":
            raise ValueError(f"{path} is not an Arrow IPC file")
        source.seek(8)
        try:
            pa.ipc.read_message(source)  # the schema
            file._start = source.tell()
            while True:
                message = pa.ipc.read_message(source)
                if message.type != "record batch":
                    break
                batch = pa.ipc.read_record_batch(message, file.schema)
                file._index(batch.column(key).to_numpy(), source.tell())
        except (pa.ArrowInvalid, EOFError, OSError):
            pass  # the end of the stream, or a batch cut short by a killed run: stop there
        return file

    @property
    def batches(self) -> int:
        return len(self._ends)

    def write(self, columns: Mapping[str, NDArray[Any]]) -> None:
        """Append one batch of rows (at least one; keys not below the last batch's)."""
        if self._writer is None or self._sink is None:
            raise ValueError(f"{self.path} is not open for writing")
        arrays = [self._arrow(columns[name], dt) for name, dt in self.dtypes.items()]
        batch = pa.record_batch(arrays, schema=self.schema)
        self._writer.write_batch(batch)
        if not self._ends:
            self._start = self._first_batch_offset()
        self._index(columns[self.key], self._sink.tell())

    def _arrow(self, values: NDArray[Any], dtype: np.dtype[Any]) -> pa.Array[Any]:
        if dtype == _TEXT:
            return pa.array(values.tolist(), type=pa.string())
        return pa.array(values, type=_arrow_type(dtype))

    def _index(self, keys: NDArray[Any], end: int) -> None:
        self.first_row.append(self.rows)
        self.first_key.append(float(keys[0]) if keys.size else math.inf)
        self.last_key.append(float(keys[-1]) if keys.size else -math.inf)
        self._ends.append(end)
        self.rows += int(keys.size)

    def _first_batch_offset(self) -> int:
        source = self._source()
        source.seek(8)
        pa.ipc.read_message(source)
        return int(source.tell())

    def close(self) -> None:
        """Finish the file (its footer) and stop writing; reading goes on."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _source(self) -> pa.OSFile:
        """The file open for reading. Read, not memory-mapped: pages of a mapped file count in
        the runner's resident memory once touched, so reading a long run back would grow it
        by the whole file."""
        if self._reader is None:
            self._reader = pa.OSFile(str(self.path), "rb")
        return self._reader

    def batch(self, k: int) -> dict[str, NDArray[Any]]:
        """The columns of batch ``k`` (read-only arrays; copy what you keep)."""
        found = self._cache.get(k)
        if found is not None:
            self._cache.move_to_end(k)
            return found
        source = self._source()
        source.seek(self._start if k == 0 else self._ends[k - 1])
        batch = pa.ipc.read_record_batch(pa.ipc.read_message(source), self.schema)
        found = {
            name: (
                np.array(batch.column(name).to_pylist(), dtype=object)
                if dt == _TEXT
                else batch.column(name).to_numpy()
            )
            for name, dt in self.dtypes.items()
        }
        self._cache[k] = found
        if len(self._cache) > _CACHED_BATCHES:
            self._cache.popitem(last=False)
        return found

    def find(self, key: float, side: Side) -> int:
        """The row at which ``key`` would be inserted to keep the file's keys in order."""
        k = int(np.searchsorted(self.last_key, key, side="left"))
        while k < self.batches and self.first_row[k] == self._row_end(k):
            k += 1  # an empty batch holds no key
        if k >= self.batches:
            return self.rows
        keys = self.batch(k)[self.key]
        return self.first_row[k] + int(np.searchsorted(keys, key, side=side))

    def _row_end(self, k: int) -> int:
        return self.first_row[k + 1] if k + 1 < self.batches else self.rows

    def read(self, lo: int, hi: int) -> dict[str, NDArray[Any]]:
        """Rows ``[lo, hi)`` of the file, as new arrays."""
        parts: dict[str, list[NDArray[Any]]] = {name: [] for name in self.dtypes}
        if hi > lo:
            first = int(np.searchsorted(self.first_row, lo, side="right")) - 1
            for k in range(max(first, 0), self.batches):
                begin = self.first_row[k]
                if begin >= hi:
                    break
                columns = self.batch(k)
                cut = slice(max(lo - begin, 0), min(hi, self._row_end(k)) - begin)
                for name in self.dtypes:
                    parts[name].append(columns[name][cut])
        return {
            name: np.concatenate(chunks).astype(dt, copy=False) if chunks else np.empty(0, dt)
            for (name, chunks), dt in zip(parts.items(), self.dtypes.values(), strict=True)
        }


class Columns:
    """Rows of typed columns numbered from 0, in order of the ``key`` column (seconds).

    The owner writes a row's values through :meth:`put` and marks a prefix of rows as settled
    (they will not change); with a file given (:meth:`stream_to`), settled rows go to it in
    batches of ``batch_rows``, and once written, rows whose key is more than ``keep`` seconds
    older than the newest are dropped from memory. Every row stays readable (:meth:`read`).
    """

    def __init__(
        self,
        dtypes: Mapping[str, np.dtype[Any]],
        key: str,
        *,
        capacity: int = 4096,
        keep: float = 60.0,
        batch_rows: int = BATCH_ROWS,
    ) -> None:
        self.dtypes = dict(dtypes)
        self.key = key
        self.keep = keep
        self.batch_rows = batch_rows
        self._capacity = max(16, capacity)
        self.arrays = {name: np.empty(self._capacity, dt) for name, dt in self.dtypes.items()}
        """The rows in memory (from row ``base`` on), with spare room at the end."""
        self.base = 0
        """The row number of the first row in memory."""
        self.size = 0
        """Rows in all."""
        self.file: ColumnFile | None = None
        self.unwritten: str | None = None
        """Why rows stopped being written to the file (they stay in memory), if they did."""

    @classmethod
    def from_file(cls, file: ColumnFile) -> Columns:
        """The rows of a finished file, none of them in memory."""
        columns = cls(file.dtypes, file.key, capacity=16)
        columns.file = file
        columns.base = columns.size = file.rows
        return columns

    @classmethod
    def holding(
        cls, dtypes: Mapping[str, np.dtype[Any]], key: str, values: Mapping[str, NDArray[Any]]
    ) -> Columns:
        """Rows in memory holding ``values`` (one array per column, of equal length)."""
        size = len(values[key])
        columns = cls(dtypes, key, capacity=size)
        for name, dtype in dtypes.items():
            columns.arrays[name][:size] = np.asarray(values[name], dtype=dtype)
        columns.size = size
        return columns

    def __len__(self) -> int:
        return self.size

    @property
    def written(self) -> int:
        """Rows in the file (all settled)."""
        return 0 if self.file is None else self.file.rows

    def stream_to(self, path: Path, *, compression: Compression | None = "zstd") -> None:
        """From now on, write settled rows to a new Arrow IPC file at ``path``."""
        if self.file is not None:
            raise ValueError(f"rows are already written to {self.file.path}")
        if self.base:
            raise ValueError("rows were dropped from memory already")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = ColumnFile.create(path, self.dtypes, self.key, compression=compression)

    def add(self) -> int:
        """A new row at the end (its values unset); its row number."""
        if self.size - self.base == self._capacity:
            self._make_room()
        self.size += 1
        return self.size - 1

    def column(self, name: str) -> NDArray[Any]:
        """The rows in memory of column ``name`` (a view: writing to it writes the rows)."""
        return self.arrays[name][: self.size - self.base]

    def put(self, row: int, name: str, value: Any) -> None:
        """Set one value of a row still in memory (a settled row that is written is final)."""
        self.arrays[name][row - self.base] = value

    def get(self, row: int, name: str) -> Any:
        """One value of a row still in memory."""
        return self.arrays[name][row - self.base]

    def settle(self, upto: int, *, flush: bool = False) -> None:
        """Rows below ``upto`` are final: write them to the file once a batch is full (every
        one of them with ``flush``). If the file cannot be written (a full disk), writing stops
        for good and the rows stay in memory: ``unwritten`` says why."""
        if self.file is None or self.unwritten is not None:
            return
        while upto - self.file.rows >= (1 if flush else self.batch_rows):
            lo = self.file.rows
            cut = slice(lo - self.base, min(upto, lo + self.batch_rows) - self.base)
            try:
                self.file.write({name: array[cut] for name, array in self.arrays.items()})
            except OSError as error:
                self.unwritten = f"{self.file.path}: {error.strerror or error}"
                return

    def close(self) -> None:
        """Write every row and finish the file; reading goes on."""
        if self.file is not None:
            self.settle(self.size, flush=True)
            try:
                self.file.close()
            except OSError as error:
                self.unwritten = self.unwritten or f"{self.file.path}: {error.strerror or error}"

    def _make_room(self) -> None:
        """Drop written rows older than ``keep`` from memory, or grow if that frees too few."""
        drop = 0
        if self.file is not None and self.size > self.base:
            newest = self.arrays[self.key][self.size - self.base - 1]
            old = int(np.searchsorted(self.column(self.key), newest - self.keep, side="left"))
            drop = min(old, self.file.rows - self.base)
        if drop >= self._capacity // 4:
            for array in self.arrays.values():
                array[: self._capacity - drop] = array[drop:]
            self.base += drop
            return
        self._capacity *= 2
        for name, old_array in self.arrays.items():
            array = np.empty(self._capacity, old_array.dtype)
            array[: old_array.size] = old_array
            self.arrays[name] = array

    def find(self, key: float | None, side: Side = "left", default: int = 0) -> int:
        """The row at which ``key`` would be inserted to keep the keys in order (``default``
        for None)."""
        if key is None:
            return default
        keys = self.column(self.key)
        at = int(np.searchsorted(keys, key, side=side))
        if at > 0 or self.base == 0 or self.file is None:
            return self.base + at
        return self.file.find(key, side)

    def read(self, lo: int, hi: int) -> dict[str, NDArray[Any]]:
        """Rows ``[lo, hi)`` as new arrays, from the file where they left memory."""
        hi = min(hi, self.size)
        if lo >= self.base:
            return {
                name: array[lo - self.base : hi - self.base].copy()
                for name, array in self.arrays.items()
            }
        if self.file is None:  # cannot happen: rows leave memory only once written
            raise ValueError(f"rows {lo} to {self.base} are neither in memory nor in a file")
        older = self.file.read(lo, min(hi, self.base))
        if hi <= self.base:
            return older
        return {
            name: np.concatenate([older[name], array[: hi - self.base]])
            for name, array in self.arrays.items()
        }
