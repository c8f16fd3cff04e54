"""Shared test helpers: paths of the repository's own files."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a text file under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def open_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site policy without caps, allowing every kind of target, for runs the repository's
    would refuse (it hits at most half the targets)."""
    policy = tmp_path / "open-policy.yaml"
    policy.write_text(
        "version: 1\nallowed_target_kinds: [proxy, process, container, host, service, node]\n"
    )
    monkeypatch.setenv("CHAOSKIT_POLICY", str(policy))


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    """A Docker engine client; with CI=true a missing engine fails the test, else it skips."""
    import os

    import docker
    import docker.errors

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Docker engine is reachable: {exc}")
        pytest.skip(f"no Docker engine reachable: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack_image(docker_client):  # type: ignore[no-untyped-def]
    """The locally built stack image (also the drivers' test image); a machine that cannot
    build it (no debootstrap, not root) skips, unless CI=true, where that is a failure."""
    import os

    from chaoskit.stack.image import ImageError, ensure_image

    try:
        return ensure_image(docker_client)
    except ImageError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the stack image cannot be built: {exc}")
        pytest.skip(f"the stack image cannot be built here: {exc}")


@pytest.fixture(scope="session")
def second_engine(docker_client, stack_image):  # type: ignore[no-untyped-def]
    """A second real Docker engine (tests/engines.py) holding the stack image; it needs root
    (its own dockerd and bridge): elsewhere it skips, unless CI=true."""
    import os

    from engines import SecondEngine

    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and a second Docker engine needs root")
        pytest.skip("a second Docker engine needs root")
    with SecondEngine() as engine:
        engine.load(docker_client, stack_image)
        yield engine


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the group into a node id
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, every test on the Docker engine runs on one worker, one at a time:
    they share the stack image (built once) and container names."""
    for item in items:
        if {"docker_client", "second_engine"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("docker"))


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage as each test ends, so that a resource it leaked (an unclosed socket or
    Docker client) fails that test, not whichever test the collector happened to run in."""
    yield
    gc.collect()
