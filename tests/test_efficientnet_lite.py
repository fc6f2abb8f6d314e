"""EfficientNet-Lite as a transformers model (tiny random configs, no download): loading through the Auto classes,
TF-SAME padding, the key rename, pooling in `encode`, contrastive adaptation, augmentation and the three trainers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Array3D, ClassLabel, Dataset, Features
from helpers.tiny import tiny_efficientnet_lite
from transformers import AutoModel, AutoModelForImageClassification

from hf_ssl import (
    ConsistencyConfig,
    ConsistencyTrainer,
    ImageAugmenter,
    LabelPropagationConfig,
    LabelPropagationTrainer,
    SelfTrainingConfig,
    SelfTrainingTrainer,
    encode,
    sample_per_class,
)
from hf_ssl.assets.efficientnet_lite import LITE_MEAN, LITE_STD, convert_state_dict, rename_key
from hf_ssl.assets.efficientnet_lite_model import EfficientNetLiteForImageClassification, SamePadConv2d
from hf_ssl.data.images import pixel_dataset
from hf_ssl.methods.contrastive import contrastive_adapt


def pool(n: int = 40, size: int = 16, seed: int = 0) -> Dataset:
    """Two classes of noisy images in [-1, 1] (Lite's normalisation); class 1 is brighter."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    pixels = (rng.normal(size=(n, 3, size, size)) * 0.3 + (labels[:, None, None, None] - 0.5)).clip(-1, 1)
    features = Features({"pixel_values": Array3D((3, size, size), "float32"), "label": ClassLabel(names=["a", "b"])})
    return Dataset.from_dict({"pixel_values": pixels.astype(np.float32), "label": labels}, features=features)


def test_same_padding_is_tensorflows():
    conv = SamePadConv2d(1, 1, kernel_size=3, stride=2)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(36.0).view(1, 1, 6, 6)
    y = conv(x)
    assert y.shape == (1, 1, 3, 3)  # ceil(6 / 2)
    # TF "SAME" on an even side with stride 2: one pixel of padding, on the bottom/right only.
    np.testing.assert_allclose(y.detach(), F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight.detach(), stride=2))
    odd = SamePadConv2d(1, 1, kernel_size=5, stride=2)(torch.zeros(1, 1, 7, 7))
    assert odd.shape == (1, 1, 4, 4)


def test_round_trip_through_the_auto_classes(tmp_path):
    model = tiny_efficientnet_lite(num_labels=3)
    model.save_pretrained(tmp_path)
    loaded, info = AutoModelForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, EfficientNetLiteForImageClassification)
    assert not any(info.values())
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.eval()(pixel_values=x).logits, model.eval()(pixel_values=x).logits)
    backbone = AutoModel.from_pretrained(tmp_path)
    out = backbone(pixel_values=x, output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 32, 5, 5) and out.pooler_output.shape == (2, 32)
    assert len(out.hidden_states) == 1 + 3 + 1  # stem, every block, head
    new_head = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert new_head.classifier.out_features == 5
    labels = torch.tensor([0, 1])
    assert model.train()(pixel_values=x, labels=labels).loss.requires_grad


def test_rename_covers_the_original_names_and_rejects_others():
    assert rename_key("_conv_stem.weight") == "efficientnet_lite.stem.conv.weight"
    assert rename_key("_bn0.running_var") == "efficientnet_lite.stem.bn.running_var"
    assert rename_key("_blocks.3._bn0.weight") == "efficientnet_lite.blocks.3.expand.bn.weight"
    assert rename_key("_blocks.20._project_conv.weight") == "efficientnet_lite.blocks.20.project.conv.weight"
    assert rename_key("_bn1.bias") == "efficientnet_lite.head.bn.bias"
    assert rename_key("_fc.weight") == "classifier.weight"
    with pytest.raises(ValueError, match="Unexpected key"):
        rename_key("_blocks.1._se_reduce.weight")  # squeeze-excite: not a Lite model


def test_convert_rejects_a_state_dict_of_another_shape():
    state = {"_conv_stem.weight": torch.zeros(16, 3, 3, 3), "_fc.weight": torch.zeros(10, 1280),
             "_fc.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match="does not fit EfficientNet-Lite2: missing"):
        convert_state_dict(state)


def test_encode_pools_the_feature_map():
    model = tiny_efficientnet_lite().eval()
    data = pool(6)
    x = torch.tensor(np.asarray(data["pixel_values"], dtype=np.float32))
    with torch.no_grad():
        out = model.efficientnet_lite(pixel_values=x, output_hidden_states=True)
    auto = encode(model, data, normalize=False, show_progress=False)
    np.testing.assert_allclose(auto, out.pooler_output, atol=1e-5)
    np.testing.assert_allclose(encode(model, data, pooling="mean", normalize=False, show_progress=False),
                               out.last_hidden_state.mean(dim=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(encode(model, data, normalize=False, layer=-2, show_progress=False),
                               out.hidden_states[-2].mean(dim=(2, 3)), atol=1e-5)
    with pytest.raises(ValueError, match="no class token"):
        encode(model, data, pooling="cls", show_progress=False)


def test_contrastive_adapt_moves_the_backbone_only():
    model = tiny_efficientnet_lite()
    head = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    body = {k: v.clone() for k, v in model.efficientnet_lite.state_dict().items()}
    images = torch.tensor(np.asarray(pool(16)["pixel_values"], dtype=np.float32))
    batches = [{"pixel_values": images[i:i + 8]} for i in (0, 8)]
    record = contrastive_adapt(model, batches, ImageAugmenter(LITE_MEAN, LITE_STD), steps=4, learning_rate=1e-3,
                               log_every=2)
    assert record["steps"] == 4 and len(record["losses"]) == 2
    assert all(torch.equal(v, model.classifier.state_dict()[k]) for k, v in head.items())
    assert any(not torch.equal(v, model.efficientnet_lite.state_dict()[k]) for k, v in body.items())


def test_augmenter_keeps_lite_pixels_in_range():
    images = torch.tensor(np.asarray(pool(8, size=30)["pixel_values"], dtype=np.float32))
    torch.manual_seed(0)
    strong = ImageAugmenter(LITE_MEAN, LITE_STD).strong_tensor(images)
    assert strong.shape == images.shape and strong.min() >= -1 and strong.max() <= 1
    assert not torch.equal(strong, images)


def test_pixel_dataset_at_any_size_with_lite_statistics():
    raw = Dataset.from_dict({"image": np.full((2, 28, 28), 255, dtype=np.uint8), "label": [0, 1]})
    out = pixel_dataset(raw, size=30, mean=LITE_MEAN, std=LITE_STD, patch_size=None)
    assert out[0]["pixel_values"].shape == (3, 30, 30) and torch.allclose(out[0]["pixel_values"], torch.ones(1))
    with pytest.raises(ValueError, match="patch_size=None"):
        pixel_dataset(raw, size=30)


def split(seed: int = 0):
    labeled, unlabeled = sample_per_class(pool(), k=4, seed=seed)
    return labeled.with_format("torch"), unlabeled.with_format("torch")


def common(tmp_path) -> dict:
    return dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
                save_strategy="no", use_cpu=True, seed=0)


def test_consistency_trainer_with_graph_prior_and_contrastive_steps(tmp_path):
    from transformers import BitImageProcessor

    labeled, unlabeled = split()
    processor = BitImageProcessor(image_mean=list(LITE_MEAN), image_std=list(LITE_STD))
    args = ConsistencyConfig(**common(tmp_path), num_train_epochs=2, threshold=0.5, randaugment_n=1,
                             graph_prior_weight=0.5, n_neighbors=3, contrastive_steps=2, contrastive_batch_size=8)
    trainer = ConsistencyTrainer(model=tiny_efficientnet_lite(), args=args, train_dataset=labeled,
                                 unlabeled_dataset=unlabeled, processing_class=processor)
    assert trainer.augmenter.mean.flatten().tolist() == list(LITE_MEAN)
    trainer.train()
    assert trainer.state.global_step == 4


def test_self_training_trainer(tmp_path):
    labeled, unlabeled = split()
    trainer = SelfTrainingTrainer(model=tiny_efficientnet_lite(), args=SelfTrainingConfig(
        **common(tmp_path), num_train_epochs=2, threshold=0.5), train_dataset=labeled, unlabeled_dataset=unlabeled)
    trainer.train()
    assert trainer.rounds[0]["pseudo_labels"]["selected"] > 0


def test_label_propagation_trainer(tmp_path):
    labeled, unlabeled = split()
    args = LabelPropagationConfig(**common(tmp_path), max_steps=4, n_neighbors=5)
    trainer = LabelPropagationTrainer(model=tiny_efficientnet_lite(), args=args, train_dataset=labeled,
                                      unlabeled_dataset=unlabeled)
    trainer.train()
    record = trainer.propagations[0]
    assert record["pseudo_labeled"] == len(unlabeled) and record["pseudo_label_accuracy"] >= 0.8
