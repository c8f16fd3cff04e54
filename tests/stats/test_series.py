"""The variance of a mean under autocorrelation, worked out a chunk of a long series at a time,
is the one the whole series at once gives (so a long run is judged in bounded memory)."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest
from scipy.signal import lfilter

from chaoskit.stats import _series
from chaoskit.stats._series import (
    _CHUNK,
    _autocovariances,
    mean_variance,
    small_sample_correction,
)


def whole(centred: np.ndarray, lags: int) -> np.ndarray:
    spectrum = np.fft.rfft(centred, n=2 * centred.size)
    return np.fft.irfft(spectrum * np.conj(spectrum))[:lags]


@pytest.mark.parametrize("phi", [0.0, 0.6, 0.95])
def test_chunked_autocovariances_are_those_of_the_whole_series(phi: float) -> None:
    noise = np.random.default_rng(7).normal(size=3 * _CHUNK + 12_345)
    series = lfilter([1.0], [1.0, -phi], noise) + 5.0
    mean = float(series.mean())
    centred = series - mean
    # within a chunk, a block and a half of lags, beyond two blocks, and every lag there is
    for lags in (1, 17, 4096, _CHUNK + _CHUNK // 2, 2 * _CHUNK + 3, series.size):
        np.testing.assert_allclose(
            _autocovariances(series, mean, lags), whole(centred, lags), rtol=1e-9, atol=1e-6
        )


def reference(x: np.ndarray) -> tuple[float, float]:
    """mean_variance as it was written before it worked in chunks: every lag at once."""
    n = x.size
    centred = x - x.mean()
    acov = whole(centred, n) / n
    gamma0 = float(acov[0])
    pairs = acov[0 : n - 1 : 2] + acov[1:n:2]
    positive = np.flatnonzero(pairs <= 0)
    pairs = pairs[: positive[0]] if positive.size else pairs
    monotone = np.minimum.accumulate(pairs)
    long_run = max(-gamma0 + 2.0 * float(monotone.sum()), gamma0 / n)
    n_eff = min(float(n), n * gamma0 / long_run)
    return long_run / n * small_sample_correction(n_eff), n_eff


@pytest.mark.parametrize("phi", [0.0, 0.9, 0.9999])  # the last: positive beyond the first lags
@pytest.mark.parametrize("n", [500, 2 * _CHUNK + 1])
def test_the_variance_of_the_mean_is_the_whole_series_one(phi: float, n: int) -> None:
    noise = np.random.default_rng(8).normal(size=n)
    series = lfilter([1.0], [1.0, -phi], noise) + 3.0
    assert mean_variance(series) == pytest.approx(reference(series), rel=1e-9)


def test_far_lags_are_worked_out_in_the_memory_of_a_few_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A series whose Geyer sequence runs past two blocks of lags (as a long soak's pooled
    # fault phases do, each with its pause): one FFT of the whole series would take four
    # times the series' own memory; blocks take a fraction of it.
    series = lfilter([1.0], [1.0, -0.9999], np.random.default_rng(3).normal(size=40 * _CHUNK))
    asked: list[int] = []
    worked_out = _series._autocovariances

    def watched(*args: Any) -> np.ndarray:
        asked.append(args[-1])  # the lags asked for
        return worked_out(*args)

    monkeypatch.setattr(_series, "_autocovariances", watched)
    tracemalloc.start()
    try:
        mean_variance(series)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(asked) > 2 * _CHUNK
    assert peak < series.nbytes / 2
