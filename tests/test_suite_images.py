"""Image runs of the benchmark suite: the ``backbone`` data setting, MNIST-5k as a dataset, and pixels, encoder,
classifier and augmenter statistics all taken from the backbone (a tiny EfficientNet-Lite saved in the test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Array2D, ClassLabel, Dataset, Features
from helpers.tiny import band_images, tiny_efficientnet_lite
from transformers import BitImageProcessor

from bench.__main__ import main as bench_main
from bench.suite import data
from bench.suite.config import ConfigError, expand
from hf_ssl.assets.efficientnet_lite import LITE_MEAN, LITE_STD

IMAGE_DATA = {"backbone": "efficientnet-lite2", "image_size": 28, "train_rows": -1, "eval_rows": -1,
              "max_unlabeled": 30}


@pytest.fixture
def tiny_backbone(tmp_path, monkeypatch):
    """Every backbone name resolves to a tiny EfficientNet-Lite folder (Lite statistics, a 5-class head where the
    data has 3 classes, as the packaged model's ImageNet head); every image data set is `band_images`. Records the
    names asked for."""
    folder = tmp_path / "lite"
    tiny_efficientnet_lite(num_labels=5).save_pretrained(folder)
    BitImageProcessor(image_mean=list(LITE_MEAN), image_std=list(LITE_STD)).save_pretrained(folder)
    asked: dict[str, list[str]] = {"backbones": [], "datasets": []}

    def backbone(name):
        asked["backbones"].append(name)
        return folder

    def dataset(name):
        asked["datasets"].append(name)
        return band_images()

    monkeypatch.setattr(data, "image_backbone_path", backbone)
    monkeypatch.setattr(data, "load_image_dataset", dataset)
    data.backbone_pixels.cache_clear()
    data.splits.cache_clear()
    yield asked
    data.backbone_pixels.cache_clear()
    data.splits.cache_clear()


def config(**changes) -> dict:
    return {"split": "test", "datasets": {"mnist_5k": dict(IMAGE_DATA)}, "budgets": [4], "seeds": [0],
            "finetune": {"max_steps": 2, "per_device_train_batch_size": 4}, **changes}


def test_image_datasets_take_a_backbone_named_in_the_assets():
    specs = expand(config(datasets={"fashion_mnist": {}, "mnist_5k": {"backbone": "efficientnet-lite2"}},
                          arms={"linear_probe": {}}))
    assert {s.dataset: s.data["backbone"] for s in specs} == {"fashion_mnist": "dinov2-s",
                                                              "mnist_5k": "efficientnet-lite2"}
    with pytest.raises(ConfigError, match=r"datasets.fashion_mnist.backbone: expected one of dinov2-s, "
                                          r"efficientnet-lite2, got 'resnet'"):
        expand(config(datasets={"fashion_mnist": {"backbone": "resnet"}}, arms={"linear_probe": {}}))
    with pytest.raises(ConfigError, match="datasets.reuters-r8: unknown key 'backbone'"):
        expand(config(datasets={"reuters-r8": {"backbone": "dinov2-s"}}, arms={"linear_probe": {}}))


def test_pixels_and_processor_follow_the_backbone(tiny_backbone):
    white = Dataset.from_dict({"image": np.full((2, 28, 28), 255, dtype=np.uint8), "label": [0, 1]},
                              features=Features({"image": Array2D((28, 28), "uint8"),
                                                 "label": ClassLabel(names=["a", "b"])}))
    pixels = data.model_inputs(white, "image", IMAGE_DATA)
    assert torch.allclose(pixels[0]["pixel_values"], torch.ones(3, 28, 28))  # (1 - 0.5) / 0.5; ImageNet's: 2.2
    assert list(data.processor("image", IMAGE_DATA).image_mean) == list(LITE_MEAN)
    assert set(tiny_backbone["backbones"]) == {"efficientnet-lite2"}


def test_image_runs_end_to_end_on_the_backbone(tiny_backbone, tmp_path):
    import yaml

    arms = {"linear_probe": {}, "label_propagator": {}, "labeled_only": {},
            "fixmatch_graph": {"kind": "consistency", "settings": {"method": "fixmatch"}}}
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(config(arms=arms)), encoding="utf-8")
    out = tmp_path / "out"
    bench_main(["--config", str(path), "--out", str(out), "--threads", "1"])
    files = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert files == sorted(f"mnist_5k-test-k4-{arm}-s0.json" for arm in arms)
    for name in files:
        saved = json.loads((out / "runs" / name).read_text(encoding="utf-8"))
        assert saved["spec"]["data"]["backbone"] == "efficientnet-lite2"
        assert 0 <= saved["result"]["accuracy"] <= 1
    fixmatch = json.loads((out / "runs" / "mnist_5k-test-k4-fixmatch_graph-s0.json").read_text(encoding="utf-8"))
    assert fixmatch["result"]["steps"] == 2 and fixmatch["result"]["labeled"] == 12
    assert tiny_backbone["datasets"] == ["mnist-5k"]
    assert [p.name for p in (out / "cache").glob("*.npy")] and all(
        "efficientnet-lite2-px28" in p.name for p in (out / "cache").glob("*.npy"))
