"""Docker engines by name: how to reach each one, as plain JSON a record can carry.

An experiment may name several engines (``system.engines``), each in one of the ``DOCKER_HOST``
forms: ``unix:///path/docker.sock``, ``tcp://host:port`` (with TLS: a CA, and a client
certificate and key) or ``ssh://user@host`` (through the ``ssh`` program, so ``~/.ssh/config``
applies; the Docker SDK also needs the paramiko package for it, which chaoskit does not
install). Without any, there is one engine, :data:`ENVIRONMENT`: the one the environment names
(``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), else the local socket.

Every container target's record carries its engine (:meth:`Engine.to_json`), so the watchdog
and ``chaoskit rollback`` reach the same engine from the record alone, whatever the
environment of the process that reverts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Self

from .base import DriverError, Unreachable

__all__ = ["ENVIRONMENT", "Engine", "engine_of"]

_TIMEOUT = 30
"""Seconds an engine has to answer one API call (``docker stop`` asks for less)."""


@dataclass(frozen=True)
class Engine:
    """One Docker engine: its name, where it listens (None: where the environment says), TLS
    files for ``tcp://``, and labels (``host``, ``zone``) its containers carry as targets."""

    name: str
    host: str | None = None
    tls: dict[str, Any] | None = None
    """``ca``, ``cert``, ``key`` (file paths) and ``verify`` (check the engine's certificate)."""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """Where the engine is, in words."""
        if self.host is not None:
            return self.host
        return os.environ.get("DOCKER_HOST") or "the local socket"

    def described(self) -> str:
        """``engine NAME (WHERE)``, or for the environment's ``engine at WHERE``."""
        if self.host is None and self.name == ENVIRONMENT.name:
            return f"engine at {self.where}"
        return f"engine {self.name} ({self.where})"

    def to_json(self) -> dict[str, Any]:
        """How a fresh process reaches this engine (labels are the targets' business)."""
        return {"name": self.name, "host": self.host, "tls": self.tls}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The inverse of :meth:`to_json`."""
        return cls(str(data["name"]), data.get("host"), data.get("tls"))

    @property
    def key(self) -> tuple[str | None, str]:
        """What tells two engines apart: where they are and how they are reached."""
        return self.host, repr(sorted((self.tls or {}).items()))

    def client(self) -> Any:
        """A connected Docker SDK client; :class:`Unreachable` if the engine does not answer,
        :class:`DriverError` if it cannot even be asked (bad TLS files, no ssh)."""
        import docker  # noqa: PLC0415 - the Docker SDK loads only when an engine is used
        import docker.errors  # noqa: PLC0415
        import docker.tls  # noqa: PLC0415
        import requests  # noqa: PLC0415

        try:
            if self.host is None:
                client = docker.from_env(timeout=_TIMEOUT)
            else:
                tls: Any = False
                if self.tls is not None:
                    cert = self.tls.get("cert")
                    key = self.tls.get("key")
                    ca = self.tls.get("ca")
                    checked = bool(self.tls.get("verify", True))
                    tls = docker.tls.TLSConfig(
                        client_cert=(cert, key) if cert and key else None,
                        ca_cert=ca if checked else None,
                        verify=(ca or True) if checked else False,
                    )
                client = self._remote(tls)
        except docker.errors.TLSParameterError as error:
            raise DriverError(f"{self.described()}: TLS: {error}") from None
        except ValueError as error:  # a host filled in at run time with a port that is no number
            raise DriverError(f"{self.described()} is not a Docker host: {error}") from None
        except docker.errors.DockerException as error:
            if "paramiko" not in str(error):
                raise Unreachable(f"Docker {self.described()} does not answer: {error}") from None
            raise DriverError(  # the SDK reaches ssh:// engines through paramiko only
                f"{self.described()}: ssh:// engines need the paramiko package "
                "(pip install paramiko) beside chaoskit"
            ) from None
        except requests.exceptions.SSLError as error:  # it answers, but not to us
            raise DriverError(
                f"{self.described()} refused the TLS handshake ({error}): check its tls "
                "files in system.engines (ca: the CA that signed the engine's certificate; "
                "cert and key: a client certificate it accepts)"
            ) from None
        except requests.RequestException as error:
            raise Unreachable(f"Docker {self.described()} does not answer: {error}") from None
        try:
            client.ping()
        except (docker.errors.DockerException, requests.RequestException) as error:
            client.close()
            raise Unreachable(f"Docker {self.described()} does not answer: {error}") from None
        return client

    def _remote(self, tls: Any) -> Any:
        """A client for an engine at :attr:`host`, deaf to the environment's CA bundle and
        proxies (``REQUESTS_CA_BUNDLE`` would replace the engine's CA: requests' own rule)."""
        import docker  # noqa: PLC0415
        import docker.constants  # noqa: PLC0415

        def made(version: str) -> Any:
            client = docker.DockerClient(
                base_url=self.host,
                tls=tls,
                timeout=_TIMEOUT,
                version=version,
                use_ssh_client=bool(self.host and self.host.startswith("ssh://")),
            )
            client.api.trust_env = False
            return client

        # the API version is asked as the SDK would, but by a client that ignores the env
        asking = made(docker.constants.MINIMUM_DOCKER_API_VERSION)
        try:
            offered = str(asking.version(api_version=False)["ApiVersion"])
        finally:
            asking.close()
        newest = docker.constants.DEFAULT_DOCKER_API_VERSION
        older = tuple(map(int, offered.split("."))) < tuple(map(int, newest.split(".")))
        return made(offered if older else newest)


ENVIRONMENT = Engine("default")
"""The engine the environment names, where an experiment names none."""


def engine_of(ref: dict[str, Any]) -> Engine:
    """The engine a container target's ``ref`` names (a record from before engines had names:
    the environment's)."""
    found = ref.get("engine")
    return Engine.from_json(found) if isinstance(found, dict) else ENVIRONMENT
