"""A one-node Docker Swarm for tests and benchmarks: a second Docker engine that runs inside
a host of its own (a network namespace, tests/hosts.py), so that it publishes its service's
port on that host's address, with a swarm initialised there and left after.

This machine's kernel has no IPVS, which the swarm's routing mesh needs: the service publishes
its port in ``host`` mode, so it has one replica, on the host's port 8080, and a task killed is
an outage its clients see until the orchestrator has started another. (The engine stores
images with vfs, which copies the image for each new container: most of a recovery here is
that.)

Use::

    with one_node_swarm(docker.from_env(), image) as swarm:
        swarm.url, swarm.name, swarm.engine.unix
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker.types
import httpx
from engines import SecondEngine
from hosts import Host, NetnsHosts
from waiting import wait_until

from chaoskit.drivers.engines import Engine
from chaoskit.drivers.swarm import running_tasks


@dataclass
class Swarm:
    """A one-node swarm on its own host, running service ``name`` (one replica)."""

    host: Host
    engine: SecondEngine
    name: str
    image: str

    @property
    def url(self) -> str:
        """The service, as its clients reach it."""
        return f"http://{self.host.address}:8080/"

    def named(self) -> Engine:
        """The engine as an experiment names it: ``sw``, on host h1 in zone a."""
        return Engine("sw", self.engine.unix, None, {"host": "h1", "zone": "a"})

    def tasks(self) -> list[dict[str, Any]]:
        """The service's running tasks."""
        with self.engine.client() as client:
            return running_tasks(client.services.get(self.name))

    def answers(self) -> bool:
        """Whether the service answers 200 now."""
        try:
            return httpx.get(self.url, timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def healthy(self) -> bool:
        """One task running, and answering."""
        return len(self.tasks()) == 1 and self.answers()


@contextlib.contextmanager
def one_node_swarm(first: Any, image: str) -> Iterator[Swarm]:
    """A swarm on a second engine in a host of its own, running one replica of ``image``'s
    ``http.server`` as a service (``first``: a client of the engine that holds the image)."""
    with NetnsHosts(1) as hosts, SecondEngine(live_restore=False, netns=hosts[0].name) as engine:
        engine.load(first, image)
        name = f"web-{uuid.uuid4().hex[:8]}"
        with engine.client() as client:
            client.swarm.init(advertise_addr=hosts[0].address)
            try:
                client.services.create(
                    image, args=["http.server", "8000"], name=name,
                    labels={"tier": "web"},
                    mode=docker.types.ServiceMode("replicated", replicas=1),
                    endpoint_spec=docker.types.EndpointSpec(ports={8080: (8000, "tcp", "host")}),
                    restart_policy=docker.types.RestartPolicy(condition="any", delay=10**9),
                )  # fmt: skip
                found = Swarm(hosts[0], engine, name, image)
                wait_until(found.healthy, 120, "the service's one task answering")
                yield found
            finally:
                client.swarm.leave(force=True)


def task_kill(swarm: Swarm, trials: int, service: str) -> str:
    """An experiment that brings up ``service`` on the swarm (one replica, on the host's port
    8081), kills its task in each of ``trials`` trials and judges the errors its clients see
    and the replicas missing (both must come back)."""
    return f"""
version: 1
name: swarm-task-kill
system:
  engines: [{{name: sw, host: "{swarm.engine.unix}", labels: {{host: h1}}}}]
  services:
    - name: {service}
      image: "{swarm.image}"
      command: [http.server, "8000"]
      ports: [{{target: 8000, published: 8081, mode: host}}]
      restart: {{condition: any, delay: 1s}}
targets:
  web: {{kind: service, select: "{service}"}}
load: {{url: "http://{swarm.host.address}:8081/", rate: 20/s, timeout: 1s}}
steady_state:
  - {{name: errors, of: error_rate, max: 5%}}
  - name: missing
    of: probe
    probe: {{type: replicas, service: "{service}", engine: sw}}
    max: 0
    interval: 250ms
faults: [{{type: crash, target: web, duration: 1s}}]
hypothesis: {{trials: {trials}, recover_within: 100s}}
phases: {{warmup: 1s, baseline: 3s, fault: 5s, recovery: 110s}}
safety: {{abort_when: [{{metric: errors, above: 99%, for: 100s}}], max_duration: 60m}}
"""
