"""The ``replicas`` probe, bound to the engine it reads: how far a Docker Swarm service is from
the replicas it asks for, which is its orchestrator's recovery as a number.

The probe is read through the experiment's engines (``drivers/engines.py``), which the load
package, on the same floor as the drivers, cannot reach: :func:`bound` gives the probe a
reader made here (the load package asks any probe with a ``reader()`` for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import PrivateAttr

from ..drivers.base import DriverError
from ..drivers.engines import ENVIRONMENT, Engine
from ..load import ProbeFailure, ProbeReader
from ..model.metrics import ReplicasProbe

__all__ = ["BoundReplicasProbe", "bound"]


class BoundReplicasProbe(ReplicasProbe):
    """A :class:`ReplicasProbe` that knows its engine, and so can be read."""

    _engine: Engine = PrivateAttr(default=ENVIRONMENT)

    def reader(self) -> ProbeReader:
        """Reads the service's tasks on the probe's engine."""
        return _ReplicasReader(self, self._engine)


def bound(probe: ReplicasProbe, engines: Sequence[Engine]) -> BoundReplicasProbe:
    """``probe`` reading through its engine among ``engines`` (the experiment's, by name; none
    named: the first, else the environment's). Raises ``ValueError`` naming the engines when
    the probe names one the experiment does not."""
    if probe.engine is None:
        engine = engines[0] if engines else ENVIRONMENT
    else:
        found = [e for e in engines if e.name == probe.engine]
        if not found:
            known = ", ".join(e.name for e in engines) or "none"
            raise ValueError(
                f"the replicas probe names engine '{probe.engine}', which system.engines does "
                f"not name (named: {known})"
            )
        engine = found[0]
    made = BoundReplicasProbe.model_validate(probe.model_dump())
    made._engine = engine
    return made


class _ReplicasReader(ProbeReader):
    def __init__(self, probe: ReplicasProbe, engine: Engine) -> None:
        super().__init__(probe.timeout.seconds)
        self._probe = probe
        self._engine = engine
        self._client: Any | None = None

    async def _read(self) -> float:
        return await asyncio.to_thread(self._count)

    def _count(self) -> float:
        import docker.errors  # noqa: PLC0415 - only for swarm probes
        import requests  # noqa: PLC0415

        from ..drivers.swarm import running_tasks  # noqa: PLC0415

        name, engine = self._probe.service, self._engine
        try:
            if self._client is None:
                self._client = engine.client()
            service = self._client.services.get(name)
            running = len(running_tasks(service))
        except DriverError as error:
            raise ProbeFailure(str(error)) from None
        except docker.errors.NotFound:
            raise ProbeFailure(f"no service '{name}' on {engine.described()}") from None
        except (docker.errors.DockerException, requests.RequestException) as error:
            raise ProbeFailure(f"{engine.described()}: {error}") from None
        if self._probe.value == "running":
            return float(running)
        mode = service.attrs["Spec"].get("Mode") or {}
        if "Replicated" in mode:
            wanted = int(mode["Replicated"].get("Replicas", 1))
        else:  # a global service: one task on each node the orchestrator means to run it on
            # (a replacement waits as "ready" through its restart delay: it counts as wanted)
            meant = service.tasks(filters={"desired-state": ["running", "ready"]})
            wanted = len({t.get("NodeID") for t in meant})
        return float(max(0, wanted - running))

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)
