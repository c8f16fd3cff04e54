"""Containers for tests that need many real ones: the stack image running ``sleep``, under a
label of their own, removed whatever happens."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sleeping(
    client: Any, image: str, count: int, tag: str | None = None
) -> Iterator[tuple[str, list[Any]]]:
    """``count`` containers of ``image`` running ``sleep``, with no network; (their label's
    value for ``chaoskit.test``, ``tag`` or a fresh one, the containers) for the block."""
    tag = tag or uuid.uuid4().hex[:8]
    boxes: list[Any] = []
    try:
        for i in range(count):
            boxes.append(
                client.containers.run(
                    image, entrypoint=["sleep", "infinity"], name=f"many-{tag}-{i}",
                    labels={"chaoskit.test": tag}, network_mode="none", detach=True,
                )
            )  # fmt: skip
        yield tag, boxes
    finally:
        for box in client.containers.list(all=True, filters={"label": f"chaoskit.test={tag}"}):
            box.remove(force=True)
