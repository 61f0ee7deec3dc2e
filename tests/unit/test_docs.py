"""README.md and docs/*.md describe what the software does now, and their links resolve.

Users read the docs: words about how the project was made (work sessions, rounds, helpers,
"the issue", goals), commit hashes, times of day of a measurement and scratch paths under
/tmp/ do not belong there. Every relative link and image must point at a file that exists, and
an anchor into a markdown file at one of its headings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")

# Checked in prose only: fenced code blocks and inline code are removed first, so an ORM
# `Session` or `session.get` in code is fine.
PROSE_WORDS = (
    (
        re.compile(
            r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth) (session|round)s?\b", re.I
        ),
        "a numbered work session or round",
    ),
    (re.compile(r"\bsessions?\b", re.I), "'session' (a work session; write an ORM `Session` in code)"),
    (re.compile(r"\brounds?\b(?![- ](trip|robin))", re.I), "'round' (a work round)"),
    (re.compile(r"\bhelpers?\b", re.I), "'helper'"),
    (re.compile(r"\bthe issue\b", re.I), "'the issue'"),
    (re.compile(r"\bgoals?\b", re.I), "'goal' (project management)"),
)
# Checked everywhere, code included: hashes were written in inline code and command comments.
ANYWHERE = (
    (re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"), "a commit hash"),
    (re.compile(r"/tmp/"), "a /tmp/ path (write DIR or another placeholder)"),
    (re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\s*-\s*\d{1,2}:\d{2}\b"), "a time of day (keep the date only)"),
)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Line:
    number: int
    text: str  # the whole line
    prose: str  # the line without inline code, "" inside a fenced code block
    in_fence: bool


def lines_of(path: Path) -> list[Line]:
    out = []
    in_fence = False
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(text):
            in_fence = not in_fence
            out.append(Line(number, text, "", True))
            continue
        prose = "" if in_fence else INLINE_CODE.sub(lambda m: " " * len(m.group(0)), text)
        out.append(Line(number, text, prose, in_fence))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of a file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    count: dict[str, int] = {}
    found = set()
    for line in lines_of(path):
        m = None if line.in_fence else HEADING.match(line.text)
        if m:
            base = slug(m.group(2))
            n = count.get(base, 0)
            count[base] = n + 1
            found.add(f"{base}-{n}" if n else base)
    return found


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def word_failures(path: Path) -> list[str]:
    failures = []
    for line in lines_of(path):
        for pattern, what in PROSE_WORDS:
            failures += [
                f"{rel(path)}:{line.number}: {what}: {m.group(0)!r} in {line.text.strip()!r}"
                for m in pattern.finditer(line.prose)
            ]
        for pattern, what in ANYWHERE:
            failures += [
                f"{rel(path)}:{line.number}: {what}: {m.group(0)!r} in {line.text.strip()!r}"
                for m in pattern.finditer(line.text)
            ]
    return failures


def link_failures(path: Path) -> list[str]:
    failures = []
    for line in lines_of(path):
        for m in LINK.finditer(line.prose):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
                continue
            file_part, _, fragment = target.partition("#")
            where = f"{rel(path)}:{line.number}: link {m.group(0)!r}"
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                failures.append(f"{where}: {file_part} does not exist")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                failures.append(f"{where}: no heading with anchor #{fragment} in {rel(linked)}")
    return failures


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_docs_speak_of_the_software_not_of_how_it_was_made(path: Path) -> None:
    failures = word_failures(path)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", DOCS, ids=rel)
def test_relative_links_and_images_resolve(path: Path) -> None:
    failures = link_failures(path)
    assert not failures, "\n".join(failures)


def test_the_checks_catch_what_they_are_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "there.png").write_bytes(b"")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Results (`bench scale`), 2026-11-29\n"
        "In the sixth session we measured it.\n"
        "A shared helper, as the issue asks; the goal is met.\n"
        "Code of `0eef681` and a run in /tmp/r6/out.\n"
        "```bash\n"
        "airflow kestra bench scale --out DIR   # 17:30-17:35\n"
        "```\n"
        "The ORM `Session` and `session.get` are code.\n"
        "![plot](img/missing.png) ![plot](img/there.png) [up](#results-bench-scale-2026-11-29)"
        " [gone](#nowhere) [web](https://example.org/x)\n",
        encoding="utf-8",
    )
    words = word_failures(doc)
    text = "\n".join(words)
    assert "doc.md:2: a numbered work session" in text
    for found in ("'helper'", "'the issue'", "'goal'", "'0eef681'", "'/tmp/'", "'17:30-17:35'"):
        assert found in text
    assert not [w for w in words if w.startswith("doc.md:8:")]
    links = link_failures(doc)
    assert len(links) == 2, links
    assert "doc.md:9: link '![plot](img/missing.png)': img/missing.png does not exist" in links[0]
    assert "no heading with anchor #nowhere" in links[1]
