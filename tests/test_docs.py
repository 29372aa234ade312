"""README.md and docs/ stay short, and what they show resolves: links, `make` targets, `python -m` modules."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    found = {slug(h) for h in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M)}
    return found | set(re.findall(r"""<a (?:id|name)=["']([^"']+)["']""", text))


def links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text())) if not re.match(r"[a-z]+:", t)]


def code(page: Path) -> str:
    """What the page shows as commands: fenced blocks, indented blocks and inline code spans."""
    text = page.read_text()
    fenced = FENCE.findall(text)
    rest = FENCE.sub("", text)
    indented = re.findall(r"^ {4}\S.*$", rest, re.M)
    return "\n".join([*fenced, *indented, *re.findall(r"`([^`\n]+)`", rest)])


def test_the_readme_is_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading '#{anchor}' in {file.relative_to(ROOT)}")
    assert broken == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Fields of models.toml\n\n[a](page.md#fields-of-modelstoml) [b](#title) "
                    "[c](gone.md) [d](page.md#gone) [e](https://example.com)\n```\n[f](inside-code.md)\n```\n")
    assert links(page) == ["page.md#fields-of-modelstoml", "#title", "gone.md", "page.md#gone"]
    assert {"title", "fields-of-modelstoml"} <= anchors(page) and "gone" not in anchors(page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_make_target_shown_is_in_the_makefile(page):
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    shown = set(re.findall(r"\bmake (?:[A-Z_]+=\S+ )*([a-z][\w-]*)", code(page)))
    assert shown - targets == set()


def runnable(module: str) -> bool:
    """`python -m module` runs a file of this project (the client package lives in client/) or a pinned tool."""
    pinned = re.findall(r"^([\w-]+)==", (ROOT / "requirements.txt").read_text(), re.M)
    if module in pinned:
        return True
    for base in (ROOT, ROOT / "client"):
        path = base.joinpath(*module.split("."))
        if path.with_suffix(".py").is_file() or (path / "__main__.py").is_file():
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_module_shown_is_the_projects_or_a_pinned_tool(page):
    shown = set(re.findall(r"\bpython -m ([\w.]+)", code(page)))
    assert [m for m in sorted(shown) if not runnable(m)] == []


def test_the_readme_shows_the_entry_points_it_promises():
    text = code(ROOT / "README.md")
    assert {"export", "serve", "test"} <= set(re.findall(r"\bmake ([a-z][\w-]*)", text))
    assert not runnable("no_such_module") and not runnable("export.no_such_step")
    assert runnable("export.trt") and runnable("modelport") and runnable("pytest")
