"""The README stays short and starts with the two set-up commands; every docs page is in the site's
nav; the README's relative links point to files that exist. `make test` also builds the site with
`mkdocs build --strict`, which checks every link and anchor inside docs/."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_README_LINES = 160


def _nav_pages(entries) -> set[str]:
    """Every page path listed in an mkdocs nav (strings, {title: page} and nested sections)."""
    pages: set[str] = set()
    for entry in entries:
        if isinstance(entry, str):
            pages.add(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages |= _nav_pages([value] if isinstance(value, str) else value)
    return pages


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_readme_starts_with_make_run_and_make_test() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert first_block, "README.md has no code block"
    assert text[: first_block.start()].count("\n") < 15, "the set-up commands must come within the first lines"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make run", "make test"], commands
    before = text[: first_block.start()]
    assert "`" not in before, "no other command may come before make run and make test"


def test_every_docs_page_is_in_the_nav() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    nav = _nav_pages(config["nav"])
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert pages - nav == set(), f"pages missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


def test_readme_relative_links_point_to_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]
    assert relative, "README.md links no file"
    missing = [t for t in relative if not (REPO / t.split("#")[0]).exists()]
    assert missing == [], f"README.md links files that do not exist: {missing}"
