"""Drivers by name: the table a journal's records are reverted through.

A record names its driver (``AppliedFault.driver``); any process, the watchdog and
``chaoskit rollback`` included, makes that driver from this table and reverts. Each backend's
library is imported only when a fault of its kind is present.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from ..model import Fault
from ..plugins import Loaded, Plugin, installed, load_group
from .base import AppliedFault, DriverConfig, DriverError, FaultDriver, Target

__all__ = [
    "BUILTIN_DRIVERS",
    "DriverFactory",
    "Drivers",
    "driver_plugins",
    "driver_table",
    "load_factory",
]


DriverFactory = Callable[[DriverConfig], FaultDriver]
"""Makes a driver; the object a ``module:attribute`` reference names."""

BUILTIN_DRIVERS: Mapping[str, str] = {
    "toxiproxy": "chaoskit.drivers.toxiproxy:ToxiproxyDriver.from_config",
    "process": "chaoskit.drivers.process:ProcessDriver.from_config",
    "docker": "chaoskit.drivers.docker:DockerDriver.from_config",
    "clock": "chaoskit.drivers.clock:ClockDriver.from_config",
    "swarm": "chaoskit.drivers.swarm:SwarmDriver.from_config",
}
"""Each built-in driver's factory, as ``module:attribute`` (the form of an entry point)."""


def driver_table() -> dict[str, str]:
    """Every driver's factory by name: the built-in ones, then those plugins add (entry point
    group ``chaoskit.drivers``; a plugin cannot replace a built-in driver)."""
    table = dict(BUILTIN_DRIVERS)
    for plugin in installed("chaoskit.drivers"):
        table.setdefault(plugin.name, plugin.value)
    return table


def driver_plugins() -> Loaded:
    """The drivers other packages add (entry point group ``chaoskit.drivers``), loaded: each a
    factory, under a name no built-in driver has (:func:`driver_table` keeps the built-in one)."""

    def fit(plugin: Plugin, found: object) -> str | None:
        if plugin.name in BUILTIN_DRIVERS:
            return f"set aside: '{plugin.name}' is a built-in driver"
        return None if callable(found) else "is not a driver factory"

    return load_group("chaoskit.drivers", fit)


def load_factory(reference: str) -> DriverFactory:
    """The factory a ``module:attribute.path`` reference names (what an entry point's
    ``load()`` does, by hand: importing ``importlib.metadata`` for it would cost 10 ms)."""
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
            driver = factory(self.config)
            if BUILTIN_DRIVERS.get(name) != reference:
                driver = _Guarded(driver)
            self._made[name] = driver
        return self._made[name]

    async def aclose(self) -> None:
        """Close every driver made so far (their clients belong to the current event loop:
        the next :meth:`get` makes them afresh)."""
        made, self._made = list(self._made.values()), {}
        for driver in made:
            await driver.aclose()


class _Guarded:
    """A driver that is not chaoskit's own (a plugin's): whatever else it raises becomes a
    :class:`DriverError` naming it, so that the run says which driver failed and ends as failed
    (exit 6); exit 70 stays for chaoskit's own bugs."""

    def __init__(self, driver: FaultDriver) -> None:
        self._driver = driver
        self.name = driver.name

    def _failed(self, what: str, error: Exception) -> DriverError:
        return DriverError(
            f"driver '{self.name}' failed to {what}: {type(error).__name__}: {error}"
        )

    async def _guard(self, what: str, call: Awaitable[None]) -> None:
        try:
            await call
        except DriverError:
            raise
        except Exception as error:  # a third party's code
            raise self._failed(what, error) from error

    def plan(self, fault: Fault, target: Target) -> AppliedFault:
        try:
            return self._driver.plan(fault, target)
        except DriverError:
            raise
        except Exception as error:  # a third party's code
            raise self._failed("plan", error) from error

    async def check(self, record: AppliedFault) -> None:
        await self._guard("check", self._driver.check(record))

    async def apply(self, record: AppliedFault) -> None:
        await self._guard("apply", self._driver.apply(record))

    async def revert(self, record: AppliedFault) -> None:
        await self._guard("revert", self._driver.revert(record))

    async def aclose(self) -> None:
        await self._guard("close", self._driver.aclose())
