"""The README starts with exactly the two set-up commands, CI runs the second one verbatim, and the docs hold
together: README at most 120 lines, every page in mkdocs.yml's nav exists, every relative link points to an
existing file (and heading)."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")
    first, second = blocks[1].split("```")[0].strip(), blocks[2].split("```")[0].strip()
    assert "recipes/text_selftrain.py" in first and first.startswith("python3 -m venv .venv")
    assert "pytest" in second
    assert text.index("```bash") < text.index("## ")
    assert second in (ROOT / ".ci" / "run").read_text()


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines; keep it at most 120 and move detail to docs/"


def _nav_pages(nav):
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from _nav_pages(value)
        else:
            yield value


def test_mkdocs_nav_pages_exist():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["site_name"]
    docs_dir = ROOT / config.get("docs_dir", "docs")
    pages = list(_nav_pages(config["nav"]))
    assert "index.md" in pages and "benchmarks.md" in pages
    missing = [page for page in pages if not (docs_dir / page).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"
    unlisted = sorted(p.name for p in docs_dir.glob("*.md") if p.name not in pages)
    assert not unlisted, f"pages in {docs_dir.name}/ missing from mkdocs.yml's nav: {unlisted}"


def _anchors(page: Path) -> set[str]:
    """GitHub-style heading anchors of a Markdown page (fenced code skipped)."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files or headings: {broken}"
