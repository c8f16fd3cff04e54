"""The request store: rows in due order, windows and groups, error kinds, a plain JSON dump."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from chaoskit.load import ErrorClass, RequestSamples


def filled(n: int = 10, capacity: int = 16) -> RequestSamples:
    """Requests due every 0.1 s from t=100; row 3 unfinished, the rest with varied outcomes."""
    samples = RequestSamples(capacity)
    outcomes = [
        (200, ErrorClass.NONE, "control"),
        (503, ErrorClass.HTTP_5XX, "experiment"),
        (0, ErrorClass.TIMEOUT, "experiment"),
        None,
        (429, ErrorClass.HTTP_4XX, None),
        (0, ErrorClass.RESET, "control"),
        (0, ErrorClass.OVERLOAD, None),
    ]
    for i in range(n):
        row = samples.reserve(100 + i / 10, 1_700_000_000 + i / 10)
        outcome = outcomes[i % len(outcomes)]
        if outcome is None:
            continue
        status, error, group = outcome
        latency = math.nan if error is ErrorClass.OVERLOAD else 0.01 * (i + 1)
        samples.finish(row, latency=latency, status=status, error=error, group=group)
    return samples


def test_windows_are_slices_by_due_time_without_unfinished_rows() -> None:
    samples = filled(n=40)  # grows past its capacity of 16
    assert samples.pending == 6 and len(samples) == 34
    window = samples.window(101.0, 102.0)
    assert np.all((window.due >= 101.0 - 1e-9) & (window.due < 102.0))
    assert len(window) == 10 - 2  # rows 10 and 17 (i % 7 == 3) are still in flight
    assert window.start == 101.0 and window.end == 102.0
    assert np.all(np.diff(window.due) > 0)
    assert len(samples.window(end=100.35)) == 3  # rows 0, 1, 2; row 3 unfinished


def test_groups_select_tagged_rows() -> None:
    samples = filled(n=14)
    assert samples.group_names == ("control", "experiment")
    control = samples.window(group="control")
    assert len(control) == 4 and set(control.group.tolist()) == {0}
    both = samples.window(group=["control", "experiment"])
    assert len(both) == 8
    assert len(samples.window(group="nobody")) == 0


def test_error_kinds_follow_the_metric_words() -> None:
    window = filled(n=7).window()
    codes = window.error.tolist()
    assert codes == [0, 5, 1, 4, 3, 6]
    assert window.errors().tolist() == [False, True, True, False, True, True]
    assert window.errors(["429"]).tolist() == [False, False, False, True, False, True]
    assert window.errors(["4xx", "timeout"]).tolist() == [False, False, True, True, False, True]
    assert window.ok.tolist() == [True, False, False, False, False, False]
    assert window.latencies().tolist() == pytest.approx([0.01, 0.02, 0.05])
    assert window.latencies("ok").tolist() == pytest.approx([0.01])
    assert window.latencies("sent").size == 5  # all but the one never sent
    with pytest.raises(ValueError, match="of must be"):
        window.latencies("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown error kind 'teapot'"):
        window.errors(["teapot"])


def test_throughput_counts_successes_when_they_end() -> None:
    samples = RequestSamples()
    for i in range(30):  # 10/s for 3 s, the second second's answers all end at once, late
        row = samples.reserve(float(i) / 10, float(i) / 10)
        latency = (2.05 - i / 10) if 10 <= i < 20 else 0.01
        samples.finish(row, latency=latency, status=200)
    rates = samples.window(0.0, 3.0).throughput(1.0)
    assert rates.tolist() == [10.0, 0.0, 20.0]
    with pytest.raises(ValueError, match="bucket"):
        samples.window().throughput(0)


def test_the_dump_is_plain_json() -> None:
    samples = filled(n=7)
    samples.finish(3, latency=0.2, status=200, error=ErrorClass.NONE, message="ignored")
    samples.first_errors["timeout"] = "TimeoutError"
    dump = json.loads(json.dumps(samples.to_json(), allow_nan=False))
    assert dump["error"] == [None, "http_5xx", "timeout", None, "http_4xx", "reset", "overload"]
    assert dump["group"][:3] == ["control", "experiment", "experiment"]
    assert dump["latency"][6] is None and dump["status"][6] is None
    assert dump["first_errors"] == {"timeout": "TimeoutError"}
    assert len(dump["due"]) == len(dump["wall"]) == 7


def test_a_dump_loads_back_into_the_same_samples() -> None:
    samples = filled(n=7)
    samples.finish(3, latency=0.2, status=200)
    samples.first_errors["timeout"] = "TimeoutError"
    dump = json.loads(json.dumps(samples.to_json(), allow_nan=False))
    again = RequestSamples.from_json(dump)
    assert again.to_json() == samples.to_json()
    assert len(again.window(group="experiment")) == len(samples.window(group="experiment")) > 0


def test_rows_are_reserved_in_order_and_finished_once() -> None:
    samples = RequestSamples()
    row = samples.reserve(5.0, 5.0)
    with pytest.raises(ValueError, match="due order"):
        samples.reserve(4.0, 4.0)
    samples.finish(row, latency=0.1, status=200)
    with pytest.raises(ValueError, match="already finished"):
        samples.finish(row, latency=0.1, status=200)
    assert ErrorClass.NONE.label is None and ErrorClass.HTTP_5XX.label == "http_5xx"


def test_a_request_waiting_past_its_deadline_has_failed_at_the_deadline() -> None:
    """Rows due at 100.0, 100.1, ...; row 0 answered, the rest still waiting (a hang)."""
    samples = RequestSamples()
    for i in range(10):
        samples.reserve(100 + i / 10, 0.0)
    samples.finish(0, latency=0.01, status=200)
    seen = samples.as_of(101.35, timeout=1.0)
    # rows 1..3 (due 100.1-100.3) are overdue at 101.35; 4..9 may still be answered
    assert len(seen) == 4 and len(samples.window()) == 1
    assert seen.error.tolist() == [0, ErrorClass.TIMEOUT, ErrorClass.TIMEOUT, ErrorClass.TIMEOUT]
    assert seen.ended.tolist() == pytest.approx([100.01, 101.1, 101.2, 101.3])
    assert samples.pending == 9  # the view changes nothing stored
    assert len(samples.as_of(101.35, timeout=1.0, start=100.25)) == 1


def test_the_fallback_group_takes_requests_nobody_can_attribute() -> None:
    samples = RequestSamples(fallback_group="experiment")
    for i in range(4):
        samples.reserve(100 + i, 0.0)
    samples.finish(0, latency=0.01, status=200, group="control")
    samples.finish(1, latency=0.01, status=0, error=ErrorClass.CONNECT)  # refused: no header
    seen = samples.as_of(110.0, timeout=2.0)  # rows 2 and 3 timed out, unanswered
    assert len(seen.of_group("experiment")) == 3 and len(seen.of_group("control")) == 1
    assert len(samples.window(group="experiment")) == 1
    untagged = RequestSamples()
    untagged.reserve(100.0, 0.0)
    untagged.finish(0, latency=0.01, status=0, error=ErrorClass.CONNECT)
    assert untagged.window().group.tolist() == [-1]


def test_censored_latencies_count_a_failure_at_the_timeout() -> None:
    window = filled(n=7).window()  # 200, 503, timeout, 429, reset, not sent
    assert window.censored_latencies(2.0).tolist() == pytest.approx(
        [0.01, 2.0, 2.0, 0.05, 2.0, 2.0]
    )
    assert window.latencies().tolist() == pytest.approx([0.01, 0.02, 0.05])  # answered only


def test_between_narrows_a_window_and_its_span() -> None:
    window = filled(n=20).window()
    part = window.between(100.5, 101.0)
    assert part.start == 100.5 and part.end == 101.0
    assert np.all((part.due >= 100.5) & (part.due < 101.0)) and len(part) == 5
