"""A noisy neighbour for chaoskit: the ``cpu_hog`` fault, the ``loadavg`` probe and the
``verdicts.csv`` report, added through entry points (see this package's pyproject.toml)."""
