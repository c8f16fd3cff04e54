"""Samples streamed to an Arrow IPC file: memory holds only recent rows, yet every query sees
every row exactly as an in-memory store does, during the run and after, from the file alone."""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from disks import fill as fill_disk
from disks import tmpfs
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoskit.load import ErrorClass, ProbeSeries, RequestSamples, Samples, send_figures

OUTCOMES = [
    (200, ErrorClass.NONE, "control"),
    (503, ErrorClass.HTTP_5XX, "experiment"),
    (0, ErrorClass.TIMEOUT, None),
    (0, ErrorClass.CONNECT, "experiment"),
]


def same(a: Samples, b: Samples) -> None:
    assert (a.start, a.end) == (b.start, b.end)
    for name in ("due", "wall", "latency", "send_lag", "status", "error", "group"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.group_names == b.group_names


def fill(samples: list[RequestSamples], n: int, lag: int, seed: int) -> None:
    """``n`` requests due every 10 ms, each finished ``lag`` rows later (some much later, some
    never), the same in every store."""
    rng = np.random.default_rng(seed)
    late = {int(i) for i in rng.choice(n, size=max(1, n // 50), replace=False)}
    waiting: list[tuple[int, int]] = []
    for i in range(n):
        for store in samples:
            assert store.reserve(100.0 + i * 0.01, 1e9 + i * 0.01) == i
        if i != n - 7:  # one never finishes
            heapq.heappush(waiting, (i + (lag * 20 if i in late else lag), i))
        while waiting and waiting[0][0] <= i:
            _, row = heapq.heappop(waiting)
            status, error, group = OUTCOMES[row % len(OUTCOMES)]
            for store in samples:
                store.finish(
                    row, latency=0.001 * (row % 13), status=status, error=error, group=group,
                    send_lag=0.0001 * (row % 3), message=f"row {row}",
                )  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=3000),
    lag=st.integers(min_value=0, max_value=40),
    batch=st.sampled_from([16, 64, 500]),
    keep=st.sampled_from([0.0, 0.5, 3.0]),
    seed=st.integers(min_value=0, max_value=2**16),
    cuts=st.lists(st.floats(min_value=99.0, max_value=135.0), min_size=2, max_size=8),
)
def test_a_streamed_store_answers_every_query_as_one_in_memory(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    n: int,
    lag: int,
    batch: int,
    keep: float,
    seed: int,
    cuts: list[float],
) -> None:
    folder = tmp_path_factory.mktemp("spill")
    reference = RequestSamples(16)
    streamed = RequestSamples(16, keep=keep, batch_rows=batch)
    streamed.stream_to(folder / "requests.arrow")
    fill([reference, streamed], n, lag, seed)
    bounds = sorted(cuts)
    for store in (reference, streamed):
        store.fallback_group = "experiment"
    queries = [(None, None), (bounds[0], bounds[-1]), (None, bounds[1]), (bounds[0], None)]
    for start, end in queries:
        same(streamed.window(start, end), reference.window(start, end))
        same(
            streamed.window(start, end, group="control"),
            reference.window(start, end, group="control"),
        )
    now = 100.0 + n * 0.01
    same(streamed.as_of(now, 0.05, bounds[0]), reference.as_of(now, 0.05, bounds[0]))
    np.testing.assert_array_equal(streamed.waiting(99.0, now), reference.waiting(99.0, now))
    assert len(streamed) == len(reference) and streamed.first_due == reference.first_due

    streamed.close()
    record = streamed.stored()
    assert record["file"] == "requests.arrow" and record["requests"] == len(reference)
    again = RequestSamples.load(record, folder)
    for start, end in queries:
        same(again.window(start, end), reference.window(start, end))
    assert again.first_errors == reference.first_errors and again.first_due == reference.first_due
    table = pa.ipc.open_file(pa.memory_map(str(folder / "requests.arrow"))).read_all()
    assert table.num_rows == n  # a standard Arrow file: any Arrow reader opens it


def test_memory_holds_only_the_recent_rows(tmp_path: Path) -> None:
    streamed = RequestSamples(16, keep=1.0, batch_rows=256)
    streamed.stream_to(tmp_path / "requests.arrow")
    fill([streamed], 20_000, 3, seed=1)
    rows = streamed._rows  # the store's own figures: how many rows memory holds
    assert rows.size == 20_000 and rows.size - rows.base < 1_000
    assert streamed.window(100.0, 100.5).due.size == 50  # rows long gone from memory
    unstreamed = RequestSamples(16, keep=1.0, batch_rows=256)
    fill([unstreamed], 20_000, 3, seed=1)
    assert unstreamed._rows.base == 0  # without a file nothing is ever dropped


def test_a_file_cut_short_by_a_killed_run_reads_up_to_its_last_whole_batch(
    tmp_path: Path,
) -> None:
    streamed = RequestSamples(16, keep=0.0, batch_rows=100)
    path = tmp_path / "requests.arrow"
    streamed.stream_to(path)
    fill([streamed], 1_000, 0, seed=2)
    written = streamed._rows.written
    assert written >= 900
    whole = streamed.window(None, 100.0 + (written - 100) * 0.01 - 0.001)
    data = path.read_bytes()  # what a SIGKILL leaves: no footer, maybe half a batch
    path.write_bytes(data[: len(data) - 50])
    again = RequestSamples.load(streamed.stored(), tmp_path)
    assert len(again.window()) == written - 100  # the torn last batch is left out
    same(again.window(None, whole.end), whole)


def test_an_older_result_with_inline_samples_still_loads() -> None:
    reference = RequestSamples(16)
    fill([reference], 200, 2, seed=3)
    again = RequestSamples.load(reference.to_json(), None)
    same(again.window(None, 103.0), reference.window(None, 103.0))


def test_probe_readings_stream_and_load_back(tmp_path: Path) -> None:
    series = ProbeSeries("live", keep=1.0, batch_rows=8)
    series.stream_to(tmp_path / "probe-live.arrow")
    for i in range(100):
        failed = i % 10 == 9
        series.add(
            50.0 + i * 0.5, 1e9 + i, None if failed else float(i), f"down {i}" if failed else None
        )
    assert series._rows.size - series._rows.base < 40  # the rest only in the file
    assert series.window(50.0, 52.0).value.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert series.failed == 10 and series.last_error == "down 99"
    series.close()
    again = ProbeSeries.load(series.stored(), tmp_path)
    assert len(again) == 100 and again.errors == series.errors and len(again.errors) == 10
    np.testing.assert_array_equal(again.value, series.value)
    assert math.isnan(again.value[9]) and again.name == "live"
    old = ProbeSeries.load(series.to_json(), None)
    np.testing.assert_array_equal(old.time, series.time)
    assert old.errors == series.errors


def test_a_full_disk_stops_the_writing_and_keeps_every_row_in_memory(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as disk:
        streamed = RequestSamples(16, keep=0.0, batch_rows=64)
        streamed.stream_to(disk / "requests.arrow")
        fill([streamed], 200, 0, seed=4)
        assert streamed._rows.written >= 128 and streamed._rows.unwritten is None
        fill_disk(disk)  # to the last byte
        reference = RequestSamples(16)
        fill([reference], 20_000, 0, seed=4)
        streamed = RequestSamples(16, keep=0.0, batch_rows=64)
        streamed.stream_to(disk / "more.arrow")
        fill([streamed], 20_000, 0, seed=4)
        streamed.close()  # no error: the record says what is missing
        assert streamed._rows.unwritten is not None
        assert "No space left on device" in streamed.stored()["unwritten"]
        same(streamed.window(), reference.window())  # the verdict still sees every request


def test_samples_never_written_to_a_file_are_stored_inline() -> None:
    reference = RequestSamples(16)
    fill([reference], 100, 2, seed=5)
    again = RequestSamples.load(reference.stored(), None)
    same(again.window(None, 101.0), reference.window(None, 101.0))
    series = ProbeSeries("live")
    series.add(1.0, 1e9, 1.0)
    assert ProbeSeries.load(series.stored(), None).value.tolist() == [1.0]


def test_send_figures_of_a_whole_streamed_run_agree_with_the_exact_ones(tmp_path: Path) -> None:
    streamed = RequestSamples(16, keep=0.0, batch_rows=500)
    streamed.stream_to(tmp_path / "requests.arrow")
    lags = np.random.default_rng(6).lognormal(-9, 1.5, 20_000).astype(np.float32)
    for i, lag in enumerate(lags):
        row = streamed.reserve(100.0 + i * 0.01, 1e9 + i)
        overload = i % 97 == 0
        if overload:
            streamed.finish(row, latency=math.nan, error=ErrorClass.OVERLOAD)
        else:
            streamed.finish(row, latency=0.001, status=200, send_lag=float(lag))
    assert streamed._rows.base > 0  # most rows are only in the file
    figures = send_figures(streamed.chunks())
    exact = send_figures(streamed.window())  # the whole run at once: the same histogram
    assert figures == exact
    sent = lags[[i % 97 != 0 for i in range(lags.size)]].astype(np.float64)
    assert figures["requests"] == 20_000 and figures["overload"] == len(range(0, 20_000, 97))
    assert figures["send_lag_max"] == round(float(sent.max()), 6)
    for name, q in (("send_lag_p50", 50), ("send_lag_p99", 99)):
        truth = float(np.percentile(sent, q))
        assert truth * 0.999 <= figures[name] <= truth * 1.008 + 1e-6, name
