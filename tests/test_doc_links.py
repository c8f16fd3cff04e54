"""The repository explains itself: every link in its Markdown resolves inside it.

A relative link must name a file or folder that exists in the repository, and its ``#anchor`` a
heading of the Markdown file it points at (slugged as GitHub does). Nothing, link or plain text,
may point at notes kept outside the repository (``../shared/...``). Absolute links are allowed
only to the public sites listed in :data:`ALLOWED_URLS`. No network, no server: it reads files.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (
    "README.md",
    "docs/*.md",
    "experiments/**/*.md",
    "benchmarks/**/*.md",
    "examples/**/*.md",
    "reports/README.md",
)
"""The Markdown files whose links are checked (as globs under the repository root)."""
ALLOWED_URLS: tuple[str, ...] = ()
"""Prefixes of absolute links that were reviewed and allowed: well-known public documentation
only. None is needed today; add one here, deliberately, rather than loosen the test."""
OUTSIDE = re.compile(r"(?:\.\./)+shared/|/work/shared\b|(?<![\w./-])shared/")
"""A reference to the notes kept beside the checkout, which the repository must not need."""

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FENCE_END = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(?:[^`\n]|\n(?!\s*\n)|(?!\1)`+)+?\1(?!`)")
_INLINE = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
    r"\(\s*(?P<target><[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(?P<target><[^<>\n]*>|\S+)", re.MULTILINE)
_AUTOLINK = re.compile(r"<(?P<target>[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>")
_HTML = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["'](?P<target>[^"']*)["']""")
_BARE_URL = re.compile(r"(?<![\w(<\"'=/])(?P<target>https?://[^\s<>()\[\]`]+)")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_HTML_ID = re.compile(r"""<[^>]*?\b(?:id|name)\s*=\s*["'](?P<id>[^"']+)["']""")
_LINE_ANCHOR = re.compile(r"L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    """A link target as written, and where."""

    source: Path
    line: int
    target: str


def _blank(match: re.Match[str]) -> str:
    """The matched text with everything but newlines turned to spaces (offsets stay valid)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def prose(text: str) -> str:
    """``text`` with fenced code blocks and code spans blanked out, lines and columns kept."""
    lines = text.splitlines(keepends=True)
    fence: str | None = None
    for index, line in enumerate(lines):
        if fence is None:
            opened = _FENCE.match(line)
            if opened is None:
                continue
            fence = opened.group(1)
        else:
            closing = _FENCE_END.match(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
        lines[index] = re.sub(r"[^\n]", " ", line)
    return _CODE_SPAN.sub(_blank, "".join(lines))


def links(path: Path) -> list[Link]:
    """Every link target in the Markdown file ``path`` (code excluded)."""
    text = prose(path.read_text(encoding="utf-8"))
    found: list[Link] = []
    for pattern in (_INLINE, _REFERENCE, _AUTOLINK, _HTML, _BARE_URL):
        for match in pattern.finditer(text):
            target = match.group("target").strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            line = text.count("\n", 0, match.start()) + 1
            found.append(Link(path, line, target))
    return sorted(set(found), key=lambda link: (link.line, link.target))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower case, punctuation dropped,
    spaces turned to hyphens (github-slugger, before any ``-1`` for a repeat)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = (c for c in text if c in " -" or unicodedata.category(c)[0] in "LNM" or c == "_")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link may name in the Markdown file ``path``."""
    original = path.read_text(encoding="utf-8")
    headings: list[str] = []
    previous = ""
    for outside_code, line in zip(prose(original).split("\n"), original.split("\n"), strict=True):
        atx = _ATX.match(line)
        if atx and _ATX.match(outside_code):
            headings.append(atx.group("text") or "")
        elif _SETEXT.match(outside_code) and previous.strip() and previous.lstrip()[:1] != "|":
            headings.append(previous.strip())
        previous = line if outside_code.strip() else ""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for heading in headings:
        first = name = slug(heading)
        while name in seen:
            seen[first] += 1
            name = f"{first}-{seen[first]}"
        seen[name] = 0
        result.add(name)
    result.update(match.group("id") for match in _HTML_ID.finditer(original))
    return result


def problem(link: Link, root: Path) -> str | None:
    """Why ``link`` does not resolve inside ``root``, or None if it does."""
    target = link.target
    if OUTSIDE.search(target):
        return "points at notes outside the repository"
    if _SCHEME.match(target) and not re.match(r"[A-Za-z]:[\\/]", target):
        if target.startswith(("http://", "https://")):
            if target.startswith(ALLOWED_URLS):
                return None
            return "absolute link to a site not in ALLOWED_URLS (review it, then list it)"
        return "a link with a scheme other than http(s)"
    if target.startswith("/"):
        return "an absolute path: use a path relative to the document"
    address, _, anchor = target.partition("#")
    address = unquote(address.partition("?")[0])
    destination = (link.source.parent / address).resolve() if address else link.source
    if not destination.is_relative_to(root.resolve()):
        return "resolves outside the repository"
    if not destination.exists():
        return "no such file or folder"
    if not anchor:
        return None
    anchor = unquote(anchor)
    if destination.suffix.lower() == ".md":
        if anchor not in anchors(destination):
            return f"no heading #{anchor} in {destination.relative_to(root.resolve())}"
        return None
    if destination.is_file() and _LINE_ANCHOR.fullmatch(anchor):
        return None
    return f"#{anchor} is not a line anchor (#L12 or #L12-L20) of a file"


def documents(root: Path) -> list[Path]:
    """The Markdown files checked, under ``root``."""
    found = {path for pattern in DOCUMENTS for path in root.glob(pattern) if path.is_file()}
    return sorted(found)


def problems(root: Path) -> list[str]:
    """Every link in the documents under ``root`` that does not resolve, as ``file:line``."""
    report = []
    for document in documents(root):
        for link in links(document):
            why = problem(link, root)
            if why is not None:
                where = f"{document.relative_to(root)}:{link.line}"
                report.append(f"{where}: ({link.target}) {why}")
    return report


def repository_files(root: Path) -> list[Path]:
    """Every file git tracks or would track (not ignored); without git, every file not hidden."""
    if not (root / ".git").exists():
        return sorted(
            path
            for path in root.rglob("*")
            if path.is_file()
            and not any(part.startswith(".") for part in path.parts[len(root.parts) :])
        )
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return documents(root)
    names = {name for name in listed.decode("utf-8", "replace").split("\0") if name}
    return sorted(path for name in names if (path := root / name).is_file())


def mentions_outside(root: Path, exclude: Path | None = None) -> list[str]:
    """Each place, in any text file of the repository, that names the notes outside it."""
    report = []
    for path in repository_files(root):
        if exclude is not None and path.resolve() == exclude.resolve():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
            if OUTSIDE.search(line):
                report.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return report


# -- the repository -----------------------------------------------------------------------------


def test_the_documents_are_found() -> None:
    found = {path.relative_to(ROOT).as_posix() for path in documents(ROOT)}
    assert {"README.md", "docs/proxy.md", "docs/toxiproxy-api.md"} <= found


def test_every_link_resolves_inside_the_repository() -> None:
    report = problems(ROOT)
    assert not report, "links that do not resolve inside the repository:\n" + "\n".join(report)


def test_nothing_points_at_notes_outside_the_repository() -> None:
    report = mentions_outside(ROOT, exclude=Path(__file__))
    assert not report, "references to notes outside the repository:\n" + "\n".join(report)


# -- the checker itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Known differences from Toxiproxy 2.12", "known-differences-from-toxiproxy-212"),
        ("`POST /populate`", "post-populate"),
        ("`POST` / `PATCH /proxies/{proxy}`", "post--patch-proxiesproxy"),
        ("Lease (chaoskit's extra)", "lease-chaoskits-extra"),
        ("`initial_toxics` (chaoskit's extra)", "initial_toxics-chaoskits-extra"),
        ("A — b", "a--b"),
        ("Ünï *code* [link](x.md)", "ünï-code-link"),
    ],
)
def test_headings_slug_as_on_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Title\n\n## Part\n\n## Part\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Read me\n"
        "[ok](docs/other.md) [ok](docs/other.md#part-1) [ok](#read-me) [ok](docs/)\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/other.md#nope)\n"
        "[outside](../elsewhere.md)\n"
        "[notes](../shared/NOTES.md)\n"
        "see <https://example.com/page>\n"
        "`[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
        "[ref]: docs/absent.md\n",
        encoding="utf-8",
    )
    report = problems(tmp_path)
    assert [entry.split(":", 2)[1] for entry in report] == ["3", "4", "5", "6", "7", "12"]
    assert "no such file or folder" in report[0]
    assert "no heading #nope in docs/other.md" in report[1]
    assert "resolves outside the repository" in report[2]
    assert "points at notes outside the repository" in report[3]
    assert "ALLOWED_URLS" in report[4]
    assert "(docs/absent.md) no such file or folder" in report[5]


def test_a_plain_mention_of_outside_notes_is_reported(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("All good.\n", encoding="utf-8")
    (tmp_path / "tool.py").write_text('"""As in ../shared/API.md."""\n', encoding="utf-8")
    (tmp_path / "other.md").write_text("Kept in shared/API.md, and fine: not_shared/x\n")
    assert mentions_outside(tmp_path) == [
        "other.md:1: Kept in shared/API.md, and fine: not_shared/x",
        'tool.py:1: """As in ../shared/API.md."""',
    ]
