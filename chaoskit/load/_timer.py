"""A one-shot timer on the monotonic clock, precise to tens of microseconds.

asyncio's own timers wake up to a millisecond late (epoll timeouts are whole milliseconds),
and every late wake-up is latency the load generator must charge to the system under test. On
Linux a timerfd watched by the event loop wakes it; elsewhere ``loop.call_at`` is used.

Waking a sleeping process takes time too (about 50 µs on a small virtual machine), so the
timerfd is armed that much early, as learnt from the last wake-ups (their median, at most
:data:`MAX_LEAD` and :data:`LEAD_SHARE` of the time since the last instant asked), and the rest
is spent spinning on the clock: the callback runs at the instant asked, at the cost of a few µs
of CPU per wake-up. A timerfd the system refuses to arm (libfaketime's wrapper does) is given
up for asyncio's timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import sys
import time
from collections.abc import Callable
from errno import EINVAL

__all__ = ["MonotonicTimer"]

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1

MAX_LEAD = 0.0001
"""The most the timerfd is armed ahead of the instant asked (seconds)."""
LEAD_SHARE = 0.5
"""The largest share of the time between two instants asked that is spent spinning. A quarter
was too little: at 9,000 sends/s (111 µs apart) it could not cover a 50 µs wake-up, and the
sends left 25 µs late (the send lag's p50), which every latency counts."""
_STEP = 1e-6
_QUANTILE = 0.5


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(_Itimerspec),
            ctypes.c_void_p,
        )
    except (OSError, AttributeError):
        return None
    return libc


class MonotonicTimer:
    """Calls ``callback`` once at the ``time.monotonic()`` instant given to :meth:`at`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self._last = -math.inf
        self._armed = 0.0
        self._lead = 0.0
        """How early the timerfd is armed: the learnt median of wake-up delays."""
        self._fd = -1
        self._libc = _libc()
        if self._libc is not None:
            fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
            if fd >= 0:
                try:
                    loop.add_reader(fd, self._fired)
                except NotImplementedError:  # an event loop without add_reader
                    os.close(fd)
                else:
                    self._fd = fd

    @property
    def precise(self) -> bool:
        """Whether a timerfd is used (else asyncio's millisecond-rounded timers)."""
        return self._fd >= 0

    @property
    def lead(self) -> float:
        """How far ahead of the instant asked the timerfd is armed now (seconds)."""
        return self._lead

    def at(self, when: float) -> None:
        """(Re)arm the timer for the monotonic instant ``when`` (seconds)."""
        if self._fd < 0 or self._libc is None:
            if self._handle is not None:
                self._handle.cancel()
            delay = when - time.monotonic()
            self._handle = self._loop.call_at(self._loop.time() + delay, self._callback)
            return
        lead = min(self._lead, max(0.0, (when - self._last) * LEAD_SHARE))
        self._when = self._last = when
        self._armed = when - lead
        nanoseconds = max(1, math.ceil(self._armed * 1e9))
        spec = _Itimerspec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(nanoseconds, 1_000_000_000)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None):
            errno = ctypes.get_errno()
            if errno != EINVAL:
                raise OSError(errno, os.strerror(errno))
            # refused as a whole (libfaketime's wrapper does so): asyncio's timers from now on
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
            self.at(when)

    def cancel(self) -> None:
        """Disarm; the callback is not called until :meth:`at` arms the timer again."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = None
        if self._fd >= 0 and self._libc is not None:
            self._libc.timerfd_settime(self._fd, 0, ctypes.byref(_Itimerspec()), None)

    def close(self) -> None:
        """Disarm and release the file descriptor."""
        self.cancel()
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:  # disarmed or re-armed after it became readable
            return
        when, now = self._when, time.monotonic()
        if when is None:
            return
        self._when = None
        if now - self._armed > self._lead:  # track the median of wake-up delays
            self._lead = min(MAX_LEAD, self._lead + _STEP * _QUANTILE)
        else:
            self._lead = max(0.0, self._lead - _STEP * (1 - _QUANTILE))
        while now < when:  # woken early on purpose: at most the lead
            now = time.monotonic()
        self._callback()
