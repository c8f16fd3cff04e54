"""Habitat's restart backoff, as properties that hold for any parameters and restart times."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaoskit.stack.backoff import RestartBackoff

bounds = st.tuples(
    st.floats(min_value=0.0, max_value=30.0), st.floats(min_value=0.0, max_value=300.0)
).map(sorted)
gaps = st.lists(st.floats(min_value=0.0, max_value=50.0), min_size=1, max_size=40)


@given(bounds=bounds, cooldown=st.floats(0.0, 100.0), gaps=gaps, seed=st.integers(0, 2**32))
def test_every_wait_obeys_the_law(
    bounds: list[float], cooldown: float, gaps: list[float], seed: int
) -> None:
    low, high = bounds
    backoff = RestartBackoff(low, high, cooldown, rng=random.Random(seed))
    now, previous, last_restart = 0.0, None, None
    for gap in gaps:
        now = (last_restart if last_restart is not None else 0.0) + gap
        wait = backoff.next_wait(now)
        assert low <= wait <= high
        if previous is None or (last_restart is not None and now - last_restart >= cooldown):
            assert wait == low  # first wait, or after a quiet cooldown
        else:
            assert wait <= max(low, 3 * previous) + 1e-9  # before capping: within [min, 3 x prev]
        previous, last_restart = wait, now + wait


@given(value=st.floats(0.0, 60.0), gaps=gaps)
def test_min_equal_max_is_a_fixed_backoff(value: float, gaps: list[float]) -> None:
    backoff = RestartBackoff(value, value, cooldown=1000.0)
    now = 0.0
    for gap in gaps:
        now += gap
        assert backoff.next_wait(now) == value


def test_waits_grow_while_crashing_and_reset_after_the_cooldown() -> None:
    backoff = RestartBackoff(1.0, 64.0, cooldown=100.0, rng=random.Random(1))
    now, waits = 0.0, []
    for _ in range(12):
        wait = backoff.next_wait(now)
        waits.append(wait)
        now += wait + 0.1  # crashes again right after each restart
    assert waits[0] == 1.0 and max(waits) > 8.0
    assert backoff.next_wait(now + 100.0) == 1.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum <= maximum"):
        RestartBackoff(5.0, 1.0, 10.0)
    with pytest.raises(ValueError, match="cooldown"):
        RestartBackoff(1.0, 5.0, -1.0)
