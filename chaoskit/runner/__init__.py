"""The runner: targets and blast radius now; phases, journal and trials as they land."""
