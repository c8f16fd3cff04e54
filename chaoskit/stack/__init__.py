"""The reference self-healing stack: a system under test, started as processes or containers.

Never imported by the runner: chaoskit points at it from outside, as at any other system.
"""
