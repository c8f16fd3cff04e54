"""chaoskit: break self-healing systems on purpose, safely, and judge how they heal."""

__version__ = "0.1.0"
