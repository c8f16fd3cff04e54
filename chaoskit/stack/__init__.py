"""The reference self-healing stack: a system under test, started as processes or containers.

The runner imports only ``contract.py``, the stack as seen from outside (ports file, container
label, ``/status``): otherwise chaoskit points at it from outside, as at any other system.
"""
