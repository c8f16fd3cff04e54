"""Seeded generators for the calibration tests (and the calibration benchmark)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def ar1(rng: np.random.Generator, n: int, phi: float, sigma: float = 0.5) -> Array:
    """An AR(1) series with stationary standard deviation ``sigma``."""
    shocks = rng.standard_normal(n) * sigma * np.sqrt(1 - phi**2)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sigma
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def latency(
    rng: np.random.Generator, n: int, *, ratio: float = 1.0, phi: float = 0.0,
    spikes: float = 0.0, sigma: float = 0.5,
) -> Array:  # fmt: skip
    """Lognormal latencies around 50 ms, optionally autocorrelated and with 10x spikes."""
    log = np.log(0.05 * ratio) + (ar1(rng, n, phi, sigma) if phi else rng.normal(0, sigma, n))
    if spikes:
        log = log + np.log(10) * (rng.random(n) < spikes)
    return np.exp(log)
