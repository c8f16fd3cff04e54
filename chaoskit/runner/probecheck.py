"""Probes checked before any fault: a typo in a query must not cost a whole run.

Each probe is read once before the load starts; a failure that waiting cannot mend (a query
Prometheus cannot parse, several series where one is needed) refuses the run at once. Any
other failure (no series yet: a counter that only appears with traffic) gets until the first
fault: a probe that has not given one good reading by then refuses the run with its own
message, before anything is injected."""

from __future__ import annotations

import asyncio

import numpy as np

from ..load import ProbeFailure, ProbeSampler, ProbeSeries
from .errors import PreflightError

__all__ = ["read_each_once", "unread_probes"]


async def read_each_once(samplers: list[ProbeSampler]) -> dict[str, str]:
    """Read every probe once, together; refuse (PreflightError) on a lasting failure and
    return the others' messages by probe name."""
    got = await asyncio.gather(*(s.reader.read() for s in samplers), return_exceptions=True)
    failing: dict[str, str] = {}
    for sampler, reading in zip(samplers, got, strict=True):
        name = sampler.series.name
        if isinstance(reading, ProbeFailure):
            if reading.lasting:
                raise PreflightError(f"probe '{name}' cannot work as written: {reading}")
            failing[name] = str(reading)
        elif isinstance(reading, BaseException):
            raise reading
    return failing


def unread_probes(probes: dict[str, ProbeSeries]) -> str | None:
    """Why no fault may be injected: the probes without a single good reading so far, each
    with its last error; None when every probe has read at least once."""
    problems = []
    for name, series in probes.items():
        if len(series) and not np.isnan(series.value).all():
            continue
        last = series.errors[max(series.errors)] if series.errors else "it was never read"
        problems.append(
            f"probe '{name}' gave no reading before the first fault ({len(series)} tries); "
            f"last: {last}"
        )
    return "; ".join(problems) or None
