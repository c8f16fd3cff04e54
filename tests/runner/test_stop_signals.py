"""The stop-signal catcher on its own, with real signals sent to this process: the first one
stops whoever is connected (once, even when it came before the connection), the later ones are
acknowledged and never raise, and the handlers before it come back afterwards."""

from __future__ import annotations

import os
import signal

from chaoskit.runner.stopping import StopSignals


def test_the_first_signal_stops_and_the_later_ones_are_only_acknowledged() -> None:
    said: list[str] = []
    stopped: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with StopSignals(say=said.append) as signals:
        signals.connect(stopped.append)
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: it would cut the run short
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.first == "SIGINT"
    assert stopped == ["SIGINT"]
    assert signals.received == ["SIGINT", "SIGTERM", "SIGINT"]
    assert said[0].startswith("SIGINT: stopping the run")
    assert all("already stopping" in line for line in said[1:])
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_before_the_run_is_connected_stops_it_at_once() -> None:
    stopped: list[str] = []
    with StopSignals(say=lambda _: None) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        signals.connect(stopped.append)
        signals.disconnect()
        os.kill(os.getpid(), signal.SIGTERM)  # after the run: acknowledged only
    assert stopped == ["SIGTERM"]
