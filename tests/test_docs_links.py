"""Every relative link in the README and the docs pages leads to a file that exists.

Links carry no ``#anchor``: headings get renamed, and a link to a missing heading fails silently on
every renderer, so pages link to pages. Code (fenced blocks and inline spans) is not a link.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "collector-config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target); the text may hold nested brackets once and span lines.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def links(markdown: str) -> list[str]:
    """The link targets of a Markdown text, outside code."""
    text = FENCE.sub("", markdown)
    text = INLINE_CODE.sub("code", text)
    return [m.group(1) for pattern in (INLINE_LINK, REFERENCE_LINK, HTML_LINK) for m in pattern.finditer(text)]


def relative(targets: list[str]) -> list[str]:
    return [t for t in targets if not SCHEME.match(t)]


def test_links_are_found_outside_code_only() -> None:
    sample = (
        'See [the page](docs/a.md), ![a picture](docs/b.png "title"), [`code` in text](c/README.md),\n'
        '[split\ntext](d.md) and <img src="e.png">.\n\n[ref]: f.md\n\n'
        "`[not](a-link.md)`\n\n```\n[not](a-link-either.md)\n```\n[web](https://example.org/x#y)\n"
    )
    assert links(sample) == ["docs/a.md", "docs/b.png", "c/README.md", "d.md", "https://example.org/x#y", "f.md", "e.png"]
    assert relative(links(sample)) == ["docs/a.md", "docs/b.png", "c/README.md", "d.md", "f.md", "e.png"]


def test_the_readme_links_its_screenshot_and_docs_pages() -> None:
    found = relative(links((ROOT / "README.md").read_text(encoding="utf-8")))
    assert "docs/compare.png" in found
    assert "docs/settings.md" in found and "docs/guarantees.md" in found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves_to_a_file(page: Path) -> None:
    bad = []
    for target in sorted(set(relative(links(page.read_text(encoding="utf-8"))))):
        if "#" in target:
            bad.append(f"{target}: an anchor (link the page, not a heading)")
            continue
        resolved = (page.parent / target).resolve()
        if not resolved.exists():
            bad.append(f"{target}: no such file ({resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
    assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_every_docs_page_the_readme_names_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = {m.rstrip(".,:;)") for m in re.findall(r"docs/[A-Za-z0-9_./-]+", readme)}
    assert named, "the README names no docs/ page"
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"the README names docs/ pages that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t).resolve() for t in relative(links((ROOT / "README.md").read_text(encoding="utf-8")))}
    orphans = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not orphans, f"docs pages the README's reference list does not link: {orphans}"
