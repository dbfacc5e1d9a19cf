"""Every specification reference in the code and the tests resolves inside the repository
(issue 14): a story criterion cited as S3.4 is in docs/stories.md, and a docs/ page named
is there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCES = [
    path
    for folder in (
        "accounting_sync", "accounts", "alerts", "audit", "config", "core", "erp_sandbox",
        "integrations", "organizations", "tests", "templates", "bench", "docs",
    )
    for path in (REPO / folder).rglob("*")
    if path.suffix in {".py", ".html", ".md", ".js"} and "migrations" not in path.parts
] + [REPO / "README.md"]  # fmt: skip
CRITERION = re.compile(r"(?<![\w.])S(\d+)\.(\d+)(?![\d])")
DOC_PAGE = re.compile(r"docs/[\w/-]+\.md")
OUTSIDE = re.compile(r"\.\./shared|STORIES\.md|DESIGN\.md|erp-contracts\.md")


def _texts() -> dict[Path, str]:
    return {path: path.read_text(errors="replace") for path in SOURCES}


def test_every_cited_story_criterion_is_in_docs_stories() -> None:
    stories = (REPO / "docs" / "stories.md").read_text()
    defined = {f"S{a}.{b}" for a, b in re.findall(r"\*\*S(\d+)\.(\d+)\*\*", stories)}
    assert len(defined) > 40
    missing = {
        f"{path.relative_to(REPO)}: S{a}.{b}"
        for path, text in _texts().items()
        for a, b in CRITERION.findall(text)
        if f"S{a}.{b}" not in defined
    }
    assert sorted(missing) == []


def test_every_docs_page_named_exists_and_nothing_cites_files_outside() -> None:
    broken, outside = set(), set()
    for path, text in _texts().items():
        where = str(path.relative_to(REPO))
        broken |= {
            f"{where}: {page}" for page in DOC_PAGE.findall(text) if not (REPO / page).exists()
        }
        if where != "tests/test_spec_references.py":
            outside |= {f"{where}: {m}" for m in OUTSIDE.findall(text)}
    assert sorted(broken) == []
    assert sorted(outside) == []
