"""Beyond one run: the run history every run is recorded in, and the gate that compares a run
with the last good one."""
