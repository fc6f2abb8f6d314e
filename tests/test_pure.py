"""Unit tests of the pure pieces: pools, pseudo-label selection, losses, the unlabeled stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, Value

from hf_ssl import UNLABELED, sample_per_class, select_pseudo_labels, soft_targets, split_pools
from hf_ssl.data.pools import read_orange_tab
from hf_ssl.data.sampling import UnlabeledBatchSampler
from hf_ssl.methods.losses import sharpen, soft_cross_entropy
from hf_ssl.methods.pseudo_labels import selection_stats


def labeled_dataset(n: int = 50, classes: int = 3) -> Dataset:
    labels = [i % classes for i in range(n)]
    features = Features({"text": Value("string"), "label": ClassLabel(names=[f"c{i}" for i in range(classes)])})
    return Dataset.from_dict({"text": [f"row {i}" for i in range(n)], "label": labels}, features=features)


def test_read_orange_tab(tmp_path):
    path = tmp_path / "toy.tab"
    path.write_text("Category\tText\nd\tstring\nclass\t\nb\tsecond doc\na\tfirst doc\nb\tthird\n\n")
    data = read_orange_tab(path)
    assert data.features["label"].names == ["a", "b"]
    assert data["label"] == [1, 0, 1]
    assert data["text"] == ["second doc", "first doc", "third"]


def test_sample_per_class_is_reproducible_and_keeps_hidden_truth():
    data = labeled_dataset(60)
    labeled, unlabeled = sample_per_class(data, k=4, seed=3)
    again, _ = sample_per_class(data, k=4, seed=3)
    other, _ = sample_per_class(data, k=4, seed=4)
    assert labeled["text"] == again["text"] and labeled["text"] != other["text"]
    assert np.bincount(labeled["label"]).tolist() == [4, 4, 4]
    assert len(unlabeled) == 48 and "label" not in unlabeled.column_names
    assert "ssl_truth" in unlabeled.column_names
    assert not set(labeled["text"]) & set(unlabeled["text"])
    _, small = sample_per_class(data, k=4, seed=3, max_unlabeled=10, truth_column=None)
    assert len(small) == 10 and small.column_names == ["text"]


def test_split_pools_uses_minus_one_for_unlabeled():
    data = Dataset.from_dict({"text": list("abcdef"), "label": [0, UNLABELED, 1, UNLABELED, UNLABELED, 0]})
    labeled, unlabeled = split_pools(data)
    assert labeled["text"] == ["a", "c", "f"] and unlabeled["text"] == ["b", "d", "e"]
    assert "label" not in unlabeled.column_names
    with pytest.raises(ValueError, match="target"):
        split_pools(data, label_column="target")


def test_threshold_selection_and_class_cap():
    probs = np.array([[0.95, 0.05], [0.91, 0.09], [0.97, 0.03], [0.2, 0.8], [0.05, 0.95], [0.5, 0.5]])
    assert select_pseudo_labels(probs, 0.9).tolist() == [0, 1, 2, 4]
    # at most one per predicted class: the most confident of each
    assert select_pseudo_labels(probs, 0.9, k_per_class=1).tolist() == [2, 4]
    assert select_pseudo_labels(probs, 0.99).tolist() == []
    stats = selection_stats(probs, np.array([2, 4]), 2, truth=np.array([0, 0, 0, 1, 0, 1]))
    assert stats["per_class"] == [1, 1] and stats["pseudo_label_accuracy"] == 0.5
    assert stats["mean_confidence"] == pytest.approx(0.96)


def test_soft_targets_temperature():
    probs = np.array([[0.6, 0.3, 0.1]])
    assert np.allclose(soft_targets(probs, 1.0), probs)
    sharp, soft = soft_targets(probs, 0.5), soft_targets(probs, 2.0)
    assert np.allclose(sharp.sum(), 1) and sharp[0, 0] > 0.6 > soft[0, 0]


@pytest.mark.parametrize("temperature", [0.4, 1.0, 2.0])
def test_soft_targets_is_sharpen_on_numpy(temperature):
    probs = torch.softmax(3 * torch.randn(32, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = probs.double() ** (1 / temperature)
    expected /= expected.sum(dim=-1, keepdim=True)
    np.testing.assert_allclose(soft_targets(probs.double().numpy(), temperature), expected.numpy(), rtol=1e-12)
    out = soft_targets(probs.numpy(), temperature)
    assert out.dtype == np.float32
    assert np.array_equal(out, sharpen(probs, temperature).numpy())  # one implementation


def test_sharpening_survives_a_tiny_temperature():
    probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.199, 0.001], [0.5, 0.25, 0.25, 0.0, 0.0, 0.0]])
    out = soft_targets(probs, 0.001)  # every power underflows in the first row
    assert np.isfinite(out).all() and np.allclose(out.sum(axis=1), 1)
    np.testing.assert_allclose(out[0, :4], 0.25, atol=2e-3)
    np.testing.assert_allclose(out[1], [1, 0, 0, 0, 0, 0], atol=1e-12)


def test_losses_match_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    onehot = F.one_hot(labels, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, labels))
    weights = torch.tensor([1.0, 0.0, 0.5, 2.0, 1.0])
    expected = (F.cross_entropy(logits, labels, reduction="none") * weights).mean()
    assert torch.allclose(soft_cross_entropy(logits, onehot, weights), expected)


def test_unlabeled_stream_is_deterministic_sharded_and_resumable():
    single = UnlabeledBatchSampler(10, batch_size=4, seed=1)
    stream = iter(single)
    batches = [next(stream) for _ in range(5)]
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    # two ranks with batch 2 see the same global stream split in two
    ranks = [iter(UnlabeledBatchSampler(10, batch_size=2, seed=1, num_replicas=2, rank=r)) for r in range(2)]
    for b in range(5):
        assert next(ranks[0]) + next(ranks[1]) == batches[b]
    resumed = iter(UnlabeledBatchSampler(10, batch_size=4, seed=1, start_batch=3))
    assert next(resumed) == batches[3]
