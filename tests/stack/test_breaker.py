"""The circuit breaker against a model of its state machine (hypothesis stateful testing)."""

from __future__ import annotations

from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chaoskit.stack.breaker import BreakerState, CircuitBreaker, CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class BreakerMachine(RuleBasedStateMachine):
    """Calls, outcomes and time passing; the real breaker must agree with a tiny model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.breaker = CircuitBreaker(
            window=6,
            min_calls=3,
            failure_rate=0.5,
            recovery_timeout=2.0,
            half_open_probes=2,
            close_after=2,
            clock=self.clock,
        )
        self.state = "closed"
        self.window: deque[bool] = deque(maxlen=6)
        self.opened_at = 0.0
        self.in_flight = 0  # calls allowed and not yet finished
        self.probes = 0
        self.successes = 0

    def _model_state(self) -> str:
        if self.state == "open" and self.clock.now - self.opened_at >= 2.0:
            self.state, self.probes, self.successes = "half_open", 0, 0
        return self.state

    def _open(self) -> None:
        self.state, self.opened_at, self.probes, self.successes = "open", self.clock.now, 0, 0

    @rule(seconds=st.floats(min_value=0.0, max_value=3.0))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def call_starts(self) -> None:
        state = self._model_state()
        allowed = state == "closed" or (state == "half_open" and self.probes < 2)
        try:
            self.breaker.acquire()
        except CircuitOpenError:
            assert not allowed
            return
        assert allowed
        if state == "half_open":
            self.probes += 1
        self.in_flight += 1

    @precondition(lambda self: self.in_flight > 0)
    @rule(ok=st.booleans())
    def call_ends(self, ok: bool) -> None:
        self.in_flight -= 1
        state = self._model_state()
        if state == "half_open":
            if ok:
                self.probes = max(0, self.probes - 1)
                self.successes += 1
                if self.successes >= 2:
                    self.state = "closed"
                    self.window.clear()
            else:
                self._open()
        elif state == "closed":
            self.window.append(ok)
            failed = list(self.window).count(False)
            if not ok and len(self.window) >= 3 and failed >= 0.5 * len(self.window):
                self._open()
        (self.breaker.success if ok else self.breaker.failure)()

    @invariant()
    def states_agree(self) -> None:
        assert self.breaker.state == BreakerState(self._model_state())


TestBreaker = BreakerMachine.TestCase
TestBreaker.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_opens_fails_fast_then_recovers() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        window=4, min_calls=4, recovery_timeout=1.0, close_after=2, clock=clock
    )
    for _ in range(4):
        breaker.acquire()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened == 1
    clock.now = 0.5
    try:
        breaker.acquire()
    except CircuitOpenError:
        pass
    else:
        raise AssertionError("an open breaker must fail fast")
    clock.now = 1.0
    assert breaker.state is BreakerState.HALF_OPEN
    for _ in range(2):
        breaker.acquire()
        breaker.success()
    assert breaker.state is BreakerState.CLOSED
