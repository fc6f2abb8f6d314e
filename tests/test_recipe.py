"""Recipe argument handling; each recipe runs end to end on the real assets in tests/test_multiprocess.py."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (ROOT / "recipes").glob("*.py"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_rejects_unknown_yaml_keys_before_loading_anything(tmp_path, monkeypatch, recipe):
    config = tmp_path / "bad.yaml"
    config.write_text("labels_per_klass: 2\n")
    monkeypatch.setattr(sys, "argv", [recipe, "--config", str(config), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=r"Unknown keys in .*bad\.yaml: \['labels_per_klass'\]"):
        runpy.run_path(str(ROOT / "recipes" / recipe), run_name="__main__")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag,value,message", [
    ("--model", "resnet-9000", "--model must be one of dinov2-s, efficientnet-lite2, got 'resnet-9000'"),
    ("--dataset", "cifar10", "--dataset must be one of fashion-mnist, mnist-5k, got 'cifar10'"),
])
def test_image_recipe_rejects_an_unknown_model_or_dataset_before_loading_anything(tmp_path, monkeypatch, flag, value,
                                                                                   message):
    monkeypatch.setattr(sys, "argv", ["image_fixmatch.py", flag, value, "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match=message):
        runpy.run_path(str(ROOT / "recipes" / "image_fixmatch.py"), run_name="__main__")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,expected", [
    ([], {"learning_rate": 2e-5, "num_train_epochs": 60, "contrastive_steps": 400}),
    (["--model", "efficientnet-lite2"], {"learning_rate": 1e-3, "num_train_epochs": 30, "contrastive_steps": 0}),
    (["--model", "efficientnet-lite2", "--learning_rate", "3e-4"], {"learning_rate": 3e-4, "contrastive_steps": 0}),
])
def test_image_recipe_takes_the_training_defaults_of_its_backbone_under_the_flags(tmp_path, argv, expected):
    recipe = runpy.run_path(str(ROOT / "recipes" / "image_fixmatch.py"))
    script, _, config = recipe["parse_recipe_args"]([*argv, "--output_dir", str(tmp_path / "out")])
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.per_device_train_batch_size == 8 and script.model == (argv[1] if argv else "dinov2-s")


def test_image_recipe_backbone_defaults_yield_to_a_yaml_config(tmp_path):
    (tmp_path / "run.yaml").write_text("model: efficientnet-lite2\nnum_train_epochs: 5\n")
    recipe = runpy.run_path(str(ROOT / "recipes" / "image_fixmatch.py"))
    _, _, config = recipe["parse_recipe_args"](["--config", str(tmp_path / "run.yaml"),
                                                "--output_dir", str(tmp_path / "out")])
    assert (config.learning_rate, config.num_train_epochs) == (1e-3, 5)
