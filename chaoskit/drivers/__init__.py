"""Fault drivers: each turns a fault and a concrete target into a journaled record, applies it,
and reverts it from the record alone (``base``); backends: toxiproxy, process, docker, clock."""
