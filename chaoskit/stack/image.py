"""The stack's container image, built on this machine: no registry is ever contacted.

Two layers, each reused when it already exists:

1. ``chaoskit/debian:bookworm``: a minimal Debian root made by ``debootstrap`` from the mirror
   this machine's apt already uses, with python3 and libfaketime, loaded by ``docker import``.
2. ``chaoskit/stack:<version>-<digest>`` (also tagged ``latest``, the name experiment files
   use): that base plus a virtualenv with chaoskit (no extras) and the stack's few
   dependencies, installed from wheels downloaded on the host.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__

__all__ = ["BASE_IMAGE", "ImageError", "apt_mirror", "ensure_image", "stack_image_tag"]

BASE_IMAGE = "chaoskit/debian:bookworm"
STACK_REPOSITORY = "chaoskit/stack"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "libfaketime", "ca-certificates", "tini")
STACK_DEPENDENCIES = (
    "aiohttp>=3.9,<4",
    "prometheus-client>=0.20,<1",
    "httpx>=0.27,<1",
    "tenacity>=8.2,<10",
)
ROOT = Path(__file__).resolve().parents[2]

Log = Callable[[str], None]


class ImageError(RuntimeError):
    """The image could not be built; the message says what to install or fix."""


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``.sources`` or ``sources.list``)."""
    files = [*sorted((sources / "sources.list.d").glob("*.sources")), sources / "sources.list"]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
        for uri in re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    raise ImageError("no Debian mirror found in /etc/apt: chaoskit builds its image from it")


def _sources_digest() -> str:
    """A digest of what goes into the stack image, so a change rebuilds it."""
    digest = hashlib.sha256()
    for dependency in STACK_DEPENDENCIES:
        digest.update(dependency.encode())
    for path in sorted((ROOT / "chaoskit").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def stack_image_tag() -> str:
    """The tag of the stack image for the chaoskit source in this checkout."""
    return f"{STACK_REPOSITORY}:{__version__}-{_sources_digest()}"


def _run(argv: list[str], log: Log, **kwargs: Any) -> None:
    log("$ " + " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise ImageError(f"{argv[0]} failed ({done.returncode}):\n" + "\n".join(tail))


def _build_base(client: Any, log: Log) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed: run `apt-get install debootstrap` (it builds the "
            "base image from Debian packages, since no container registry is used)"
        )
    if os.geteuid() != 0:
        raise ImageError("building the base image with debootstrap needs root")
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="chaoskit-rootfs-") as tmp:
        root = Path(tmp) / "root"
        _run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             SUITE, str(root), mirror],
            log,
        )  # fmt: skip
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(root, arcname=".")
        log(f"docker import -> {BASE_IMAGE}")
        with archive.open("rb") as data:
            repository, _, tag = BASE_IMAGE.partition(":")
            client.api.import_image_from_data(data.read(), repository=repository, tag=tag)


_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/chaoskit \\
 && /opt/chaoskit/bin/pip install --no-index --find-links /tmp/wheels --no-deps /tmp/wheels/* \\
 && rm -rf /tmp/wheels
ENV PATH=/opt/chaoskit/bin:$PATH PYTHONUNBUFFERED=1
ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m"]
"""


def _build_stack(client: Any, tag: str, log: Log) -> None:
    with tempfile.TemporaryDirectory(prefix="chaoskit-image-") as tmp:
        wheels = Path(tmp) / "wheels"
        pip = [sys.executable, "-m", "pip"]
        _run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], log)
        _run(
            [*pip, "download", "-q", "--only-binary=:all:", "--python-version", "3.11",
             "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
             "-d", str(wheels), *STACK_DEPENDENCIES],
            log,
        )  # fmt: skip
        (Path(tmp) / "Dockerfile").write_text(_DOCKERFILE)
        log(f"docker build -> {tag}")
        _image, output = client.images.build(path=tmp, tag=tag, rm=True, pull=False)
        for chunk in output:
            if "stream" in chunk:
                log(str(chunk["stream"]).rstrip())


def ensure_image(client: Any, log: Log = lambda _: None) -> str:
    """The stack image's tag, building what is missing; raises :class:`ImageError`."""
    import docker.errors  # noqa: PLC0415 - the Docker SDK is loaded only where it is used

    tag = stack_image_tag()
    try:
        client.images.get(tag).tag(STACK_REPOSITORY, "latest")  # what experiment files name
        return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _build_base(client, log)
    try:
        _build_stack(client, tag, log)
    except docker.errors.BuildError as exc:
        lines = [str(c.get("stream", c.get("error", ""))).rstrip() for c in exc.build_log]
        raise ImageError("docker build failed:\n" + "\n".join(lines[-15:])) from None
    client.images.get(tag).tag(STACK_REPOSITORY, "latest")
    _prune_older(client, tag, log)
    return tag


def _prune_older(client: Any, keep: str, log: Log) -> None:
    """Remove stack images of earlier sources that no container uses."""
    import docker.errors  # noqa: PLC0415

    for image in client.images.list(name=STACK_REPOSITORY):
        for old in image.tags:
            if old not in (keep, f"{STACK_REPOSITORY}:latest"):
                try:
                    client.images.remove(old)
                    log(f"removed old image {old}")
                except docker.errors.APIError:
                    pass  # still used by a container: leave it
