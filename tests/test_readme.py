"""The README starts with exactly the two set-up commands, and CI runs the second one verbatim."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```bash\n")
    first, second = blocks[1].split("```")[0].strip(), blocks[2].split("```")[0].strip()
    assert "recipes/text_selftrain.py" in first and first.startswith("python3 -m venv .venv")
    assert "pytest" in second
    assert text.index("```bash") < text.index("## ")
    assert second in (ROOT / ".ci" / "run").read_text()
