"""A recipe run is reproducible: the new classification head is initialised after ``set_seed(seed)``."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_text_recipe_twice_in_one_process_gives_the_same_model(tmp_path, monkeypatch):
    models = []
    for run in ("first", "second"):
        monkeypatch.setattr(sys, "argv", [
            "text_selftrain.py", "--output_dir", str(tmp_path / run), "--max_rounds", "0", "--max_steps", "1",
            "--max_unlabeled", "8", "--max_eval", "8", "--report_to", "none", "--disable_tqdm", "true"])
        runpy.run_path(str(ROOT / "recipes" / "text_selftrain.py"), run_name="__main__")
        models.append(load_file(tmp_path / run / "model.safetensors"))
    assert models[0].keys() == models[1].keys()
    assert all((models[0][k] == models[1][k]).all() for k in models[0]), "the two runs' models differ"
