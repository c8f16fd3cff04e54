"""How chaoskit starts a process or container so that a fault can reach it later.

``sandbox``: in its own mount namespace with a size-capped tmpfs (for ``disk_full``);
``faketime``: under libfaketime reading a skew file (for ``clock_skew``). Used by the runner's
bring-up and by the reference stack alike, so it sits below both and below the drivers.
"""

from __future__ import annotations

__all__ = ["LaunchError"]


class LaunchError(Exception):
    """A target cannot be started as a fault needs it (a library is missing); the message
    says what to install."""
