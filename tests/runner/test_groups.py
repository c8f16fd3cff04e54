"""Against a concurrent control, each answer is tagged by the target its header names; a run
whose header never names a target of a group stops before any fault, saying what it named."""

from __future__ import annotations

import pytest

from chaoskit.load import ErrorClass, RequestSamples
from chaoskit.runner.groups import GroupTagger
from chaoskit.runner.plan import PreflightError


def baseline(tagger: GroupTagger, headers: list[str | None]) -> RequestSamples:
    samples = RequestSamples(fallback_group="experiment")
    for i, header in enumerate(headers):
        row = samples.reserve(float(i), float(i))
        if header == "refused":
            samples.finish(row, latency=0.001, error=ErrorClass.CONNECT, group=tagger(None))
        else:
            samples.finish(row, latency=0.01, status=200, group=tagger(header))
    return samples


def test_answers_are_tagged_by_the_target_their_header_names() -> None:
    tagger = GroupTagger({"backend-1"}, {"backend-2"})
    samples = baseline(tagger, ["backend-1", "backend-2", "backend-1", "refused"])
    assert len(samples.window(group="experiment")) == 3  # the refusal counts against it
    assert len(samples.window(group="control")) == 1
    tagger.check(samples, (0.0, 10.0), "X-Backend")  # both groups answered: fine


def test_a_target_on_a_named_engine_is_known_by_its_bare_name_unless_two_share_it() -> None:
    """``east/backend-1`` is what chaoskit calls it; its header says ``backend-1``. Where both
    engines run a ``backend-2``, that header cannot say which served, and counts against the
    experiment group, as an answer without the header does."""
    tagger = GroupTagger(
        {"east/backend-1", "east/backend-2", "east/cache", "west/cache"},
        {"west/backend-2", "west/web"},
    )
    assert tagger("cache") == "experiment"  # both caches were hit: no doubt which group
    assert tagger("backend-1") == "experiment"
    assert tagger("east/backend-1") == "experiment"
    assert tagger("web") == "control"
    assert tagger("west/backend-2") == "control"
    assert tagger("backend-2") is None
    assert tagger("elsewhere") == "control"


@pytest.mark.parametrize(
    ("headers", "group", "named"),
    [
        (["a", "b", "a", "b"], "experiment", "which named: a, b;"),
        ([None, None, None], "control", "which named: nothing (no answer carried it)"),
    ],
)
def test_a_header_that_never_names_a_target_stops_the_run(
    headers: list[str | None], group: str, named: str
) -> None:
    tagger = GroupTagger({"backend-1"}, {"backend-2"})
    samples = baseline(tagger, headers)
    with pytest.raises(PreflightError, match=f"named a target of the {group} group") as caught:
        tagger.check(samples, (0.0, 10.0), "X-Backend")
    assert named in str(caught.value) and "make X-Backend carry the target's name" in str(
        caught.value
    )
