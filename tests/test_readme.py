"""The README starts with exactly the two set-up commands, CI runs the second one verbatim, the first installs no
extra and the main job imports none, and the docs hold together: README at most 120 lines, every page in
mkdocs.yml's nav exists, every relative link points to an existing file (and heading)."""

import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _commands() -> tuple[str, str]:
    blocks = (ROOT / "README.md").read_text().split("```bash\n")
    return blocks[1].split("```")[0].strip(), blocks[2].split("```")[0].strip()


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    first, second = _commands()
    assert "recipes/text_selftrain.py" in first and first.startswith("python3 -m venv .venv")
    assert "pytest" in second
    assert text.index("```bash") < text.index("## ")
    assert second in (ROOT / ".ci" / "run").read_text()


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_main_job_installs_and_imports_no_extra():
    """The first command installs the core dependencies only, the second the dev extra; the main job's recipe
    (imported and its argument parser run, with every module that only an extra installs made unimportable)
    needs none of the extras."""
    first, second = _commands()
    assert ".venv/bin/pip install -e . " in first and "[" not in first, first
    assert '.venv/bin/pip install -e ".[dev]"' in second
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_distribution(r) for r in project["dependencies"]}
    extras = {_distribution(r) for reqs in project["optional-dependencies"].values() for r in reqs} - core
    blocked = sorted(m for m, dists in packages_distributions().items()
                     if any(_distribution(d) in extras for d in dists))
    assert {"onnx", "onnxruntime", "faiss", "kornia"} <= set(blocked), "install the dev extra to run this test"
    code = (f"import runpy, sys\nsys.modules.update(dict.fromkeys({blocked!r}))\n"
            "sys.argv = ['text_selftrain.py', '--help']\n"
            "runpy.run_path('recipes/text_selftrain.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "--threshold" in result.stdout, result.stderr[-3000:]


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
