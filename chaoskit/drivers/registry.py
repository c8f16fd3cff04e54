"""Drivers by name: the table a journal's records are reverted through.

A record names its driver (``AppliedFault.driver``); any process, the watchdog and
``chaoskit rollback`` included, makes that driver from this table and reverts. Each backend's
library is imported only when a fault of its kind is present.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import cast

from ..plugins import installed
from .base import DriverConfig, DriverError, FaultDriver

__all__ = ["BUILTIN_DRIVERS", "DriverFactory", "Drivers", "driver_table", "load_factory"]


DriverFactory = Callable[[DriverConfig], FaultDriver]
"""Makes a driver; the object a ``module:attribute`` reference names."""

BUILTIN_DRIVERS: Mapping[str, str] = {
    "toxiproxy": "chaoskit.drivers.toxiproxy:ToxiproxyDriver.from_config",
    "process": "chaoskit.drivers.process:ProcessDriver.from_config",
    "docker": "chaoskit.drivers.docker:DockerDriver.from_config",
    "clock": "chaoskit.drivers.clock:ClockDriver.from_config",
}
"""Each built-in driver's factory, as ``module:attribute`` (the form of an entry point)."""


def driver_table() -> dict[str, str]:
    """Every driver's factory by name: the built-in ones, then those plugins add (entry point
    group ``chaoskit.drivers``; a plugin cannot replace a built-in driver)."""
    table = dict(BUILTIN_DRIVERS)
    for plugin in installed("chaoskit.drivers"):
        table.setdefault(plugin.name, plugin.value)
    return table


def load_factory(reference: str) -> DriverFactory:
    """The factory a ``module:attribute.path`` reference names."""
    module_name, _, path = reference.partition(":")
    found: object = importlib.import_module(module_name)
    for part in path.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise DriverError(f"'{reference}' does not name a driver factory")
    return cast(DriverFactory, found)


class Drivers:
    """One instance of each driver, made on first use, closed together."""

    def __init__(
        self, toxiproxy_url: str | None = None, *, table: Mapping[str, str] | None = None
    ) -> None:
        self.config = DriverConfig(toxiproxy_url)
        self._table = driver_table() if table is None else table
        self._made: dict[str, FaultDriver] = {}

    def get(self, name: str) -> FaultDriver:
        """The driver called ``name`` (as recorded in an :class:`AppliedFault`)."""
        if name not in self._made:
            reference = self._table.get(name)
            if reference is None:
                known = ", ".join(sorted(self._table))
                raise DriverError(f"no driver called '{name}' (known: {known})")
            try:
                factory = load_factory(reference)
            except (ImportError, AttributeError) as error:
                raise DriverError(
                    f"driver '{name}' ({reference}) cannot be loaded: {error}"
                ) from None
            self._made[name] = factory(self.config)
        return self._made[name]

    async def aclose(self) -> None:
        """Close every driver made so far (their clients belong to the current event loop:
        the next :meth:`get` makes them afresh)."""
        made, self._made = list(self._made.values()), {}
        for driver in made:
            await driver.aclose()
