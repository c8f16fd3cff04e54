"""Which group a request belongs to, against a concurrent control: the target its answer's
group header names (hit by the fault: ``experiment``; not hit: ``control``). A request without
the header — no answer at all, or an answer that does not carry it — is left to the samples'
fallback group, which the runner sets to ``experiment``: a failure nobody can attribute never
helps the claim that the system held (docs/experiment-file.md, load)."""

from __future__ import annotations

from ..load import RequestSamples
from .errors import PreflightError

__all__ = ["GroupTagger"]


class GroupTagger:
    """Tags an answer by the target its group header names; an answer without the header is
    left to the samples' fallback group (with a concurrent control: ``experiment``). Keeps the
    values it saw, to say what the header named when it never names a target."""

    def __init__(self, hit: set[str], control: set[str]) -> None:
        self.hit = hit
        self.control = control
        self.seen: set[str] = set()
        groups: dict[str, set[str]] = {}
        for name in hit | control:
            if "/" in name:
                bare = name.rpartition("/")[2]
                groups.setdefault(bare, set()).add("experiment" if name in hit else "control")
        self._aliases = {bare: next(iter(g)) for bare, g in groups.items() if len(g) == 1}
        """A target on a named engine or server (``east/web-1``) by its bare name, which a
        header is more likely to carry, where every target with that name is in one group."""
        self._ambiguous = set(groups) - set(self._aliases)
        """Bare names targets of both groups share: the header cannot say which served."""

    def __call__(self, value: str | None) -> str | None:
        if value is None:
            return None
        if len(self.seen) < 20:
            self.seen.add(value)
        if value in self.hit:
            return "experiment"
        if value in self.control:
            return "control"
        if value in self._ambiguous:
            return None  # the fallback group, as for an answer without the header
        return self._aliases.get(value, "control")

    def check(self, samples: RequestSamples, baseline: tuple[float, float], header: str) -> None:
        """Refuse (before any fault) a concurrent run whose groups got no answer in the
        baseline: the header does not carry the target names, so no comparison is possible."""
        for group, names in (("experiment", self.hit), ("control", self.control)):
            if not len(samples.window(*baseline, group=group).of_answered()):
                named = ", ".join(sorted(self.seen)) or "nothing (no answer carried it)"
                raise PreflightError(
                    f"no answer in the baseline named a target of the {group} group "
                    f"({', '.join(sorted(names))}) in its {header} header, which named: "
                    f"{named}; make {header} carry the target's name, or drop "
                    "load.group_header to compare the fault phase with the baseline"
                )
