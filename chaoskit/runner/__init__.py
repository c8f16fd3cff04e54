"""The runner: one experiment from preflight to verdict, with every fault taken back.

``run`` drives the phases; ``plan`` draws targets and plans faults before anything is touched;
``system`` brings the system up and down; ``fronts`` places proxies in front of targets;
``journal``, ``rollback`` and ``watchdog`` guarantee the reverts; ``measure``, ``sequential``
and ``verdict`` judge; ``result`` writes the run's document.
"""
