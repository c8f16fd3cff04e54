"""Cleaning inputs, and the variance of a mean under autocorrelation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Floats", "as_floats", "mean_variance", "small_sample_correction"]

Floats = NDArray[np.float64]


def as_floats(values: Sequence[Any] | NDArray[Any], name: str) -> tuple[Floats, int]:
    """A 1-D float array without NaN, and how many NaN were dropped; ValueError on bad input."""
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise ValueError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold numbers only") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    keep = ~np.isnan(array)
    if keep.all():  # no copy: a long run's windows are judged in as little memory as they take
        return array, 0
    return array[keep], int(array.size - keep.sum())


def mean_variance(x: Floats) -> tuple[float, float]:
    """The variance of ``mean(x)`` for a time-ordered series, and its effective sample size.

    Long-run variance by Geyer's initial monotone sequence over the autocovariances (so spikes
    on top of slow drift are covered, not only lag-1 correlation), then a small-sample bias
    correction: short series underestimate it by about two autocorrelation times in ``n``.
    """
    n = x.size
    mean = float(x.mean())
    lags = n if n <= _CHUNK else _FIRST_LAGS  # a short series' one FFT gives every lag at once
    while True:  # Geyer's sequence ends at its first pair <= 0: look no further than that
        acov = _autocovariances(x, mean, lags) / n
        pairs = acov[0 : lags - 1 : 2] + acov[1:lags:2]
        positive = np.flatnonzero(pairs <= 0)
        if positive.size or lags == n:
            break
        lags = min(n, lags * 8)
    gamma0 = float(acov[0])
    if gamma0 <= 0.0:
        return 0.0, float(n)
    pairs = pairs[: positive[0]] if positive.size else pairs
    monotone = np.minimum.accumulate(pairs) if pairs.size else pairs
    long_run = max(-gamma0 + 2.0 * float(monotone.sum()), gamma0 / n)
    n_eff = min(float(n), n * gamma0 / long_run)
    return long_run / n * small_sample_correction(n_eff), n_eff


_FIRST_LAGS = 4096
"""Autocovariances worked out first; more only if the sequence has not ended within them."""
_CHUNK = 1 << 16
"""Values correlated at once, and lags worked out at once: besides its result, the memory
:func:`_autocovariances` takes is that of a few chunks, whatever the series' length and however
far Geyer's sequence reaches."""


def _autocovariances(x: Floats, mean: float, lags: int) -> Floats:
    """``sum((x[i] - mean) * (x[i + k] - mean))`` for each lag ``k < lags``.

    A short series is correlated with itself at once by FFT. A long one is cut into chunks of
    :data:`_CHUNK` values, each correlated with the values after it one block of :data:`_CHUNK`
    lags at a time, so no FFT is longer than two chunks; each slice is centred as it is read.
    """
    n = x.size
    if n <= _CHUNK:
        centred = x - mean
        spectrum = np.fft.rfft(centred, n=2 * n)
        whole: Floats = np.fft.irfft(spectrum * np.conj(spectrum))[:lags]
        return whole
    size = 2 * _CHUNK  # a chunk against the chunk + block - 1 values after its start: no wrap
    total = np.zeros(lags)
    for start in range(0, n, _CHUNK):
        head = np.conj(np.fft.rfft(x[start : start + _CHUNK] - mean, size))
        for first in range(0, min(lags, n - start), _CHUNK):
            last = min(first + _CHUNK, lags)
            span = x[start + first : start + first + size - 1] - mean
            total[first:last] += np.fft.irfft(head * np.fft.rfft(span, size), size)[: last - first]
    return total


def small_sample_correction(n_eff: float) -> float:
    """How much a short, correlated series underestimates the variance of its mean: about two
    autocorrelation times in ``n``, so 1 / (1 - 2 / n_eff), at most 4."""
    return 1.0 / max(1.0 - 2.0 / n_eff, 0.25) if n_eff > 2 else 4.0
