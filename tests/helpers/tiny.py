"""Tiny random models and keyword-text pools built in the tests (no download, a few milliseconds each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def word_tokenizer(folder: Path) -> BertTokenizerFast:
    """A word-level BERT tokenizer over the special tokens and `WORDS`, written to ``folder``."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))


def tiny_bert(num_labels: int = 3, seed: int = 0, **config) -> BertForSequenceClassification:
    """A 2-layer BERT with hidden size 16 over the `word_tokenizer` vocabulary, initialised from ``seed``."""
    import torch

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=num_labels,
                     **({"initializer_range": 0.2} | config))
    return BertForSequenceClassification(cfg)


def make_texts(n: int, num_labels: int = 3, seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts whose class is signalled by a class keyword among random filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        y = int(rng.integers(num_labels))
        filler = rng.choice(WORDS[num_labels:], size=3).tolist()
        filler.insert(int(rng.integers(4)), WORDS[y])
        filler.insert(int(rng.integers(5)), WORDS[y])
        texts.append(" ".join(filler))
        labels.append(y)
    return texts, labels


def text_pool(tokenizer, n: int, num_labels: int = 3, seed: int = 0, label_name: str = "label") -> Dataset:
    """`make_texts` as a tokenized dataset with a `ClassLabel` column ``label_name`` (classes c0, c1, ...)."""
    texts, labels = make_texts(n, num_labels, seed)
    features = Features({"text": Value("string"), label_name: ClassLabel(names=[f"c{i}" for i in range(num_labels)])})
    data = Dataset.from_dict({"text": texts, label_name: labels}, features=features)
    return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=16), batched=True)


def variable_texts(n: int, seed: int = 0) -> list[str]:
    """Texts of 1 to 12 random words, so that token lengths vary a lot."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 13))).tolist()) for _ in range(n)]


def tiny_vit(num_labels: int = 2, image_size: int = 16, seed: int = 0, **config):
    """A 1-layer ViT over ``image_size``² RGB images in 8×8 patches, initialised from ``seed``."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    return ViTForImageClassification(ViTConfig(image_size=image_size, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                               num_attention_heads=2, intermediate_size=32, num_labels=num_labels,
                                               **config))


def pixel_pool(n: int, num_labels: int = 2, size: int = 16, seed: int = 0, truth: bool = False) -> Dataset:
    """``n`` random (3, size, size) float32 images whose class brightens the top half; a ``label`` column, or the
    hidden-truth column ``ssl_truth`` (an unlabeled pool) when ``truth``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_labels
    pixels = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    pixels[:, :, : size // 2] += labels[:, None, None, None].astype(np.float32)
    return Dataset.from_dict({"pixel_values": pixels.tolist(), ("ssl_truth" if truth else "label"): labels.tolist()})


def tiny_efficientnet_lite(num_labels: int = 2, seed: int = 0, **config):
    """A 3-block EfficientNet-Lite (stem 8, stages 8 and 16 channels, head 32), initialised from ``seed``."""
    import torch

    from hf_ssl.assets.efficientnet_lite_model import EfficientNetLiteConfig, EfficientNetLiteForImageClassification

    torch.manual_seed(seed)
    values = dict(stem_channels=8, stage_channels=[8, 16], stage_repeats=[1, 2], kernel_sizes=[3, 5], strides=[1, 2],
                  expand_ratios=[1, 2], hidden_size=32, num_labels=num_labels, image_size=16)
    return EfficientNetLiteForImageClassification(EfficientNetLiteConfig(**{**values, **config}))


def band_images(train: int = 120, test: int = 60) -> DatasetDict:
    """28x28 uint8 images of three classes, each brightening its own band of rows (a stand-in for
    `hf_ssl.load_fashion_mnist`), ``train`` and ``test`` images."""
    rng = np.random.default_rng(0)
    features = Features({"image": Array2D((28, 28), "uint8"), "label": ClassLabel(names=["a", "b", "c"])})

    def split(n: int) -> Dataset:
        labels = np.arange(n) % 3
        images = rng.integers(0, 60, size=(n, 28, 28))
        for c in range(3):
            images[labels == c, 9 * c : 9 * c + 9] += 150
        return Dataset.from_dict({"image": images.astype(np.uint8), "label": labels}, features=features)

    return DatasetDict({"train": split(train), "test": split(test)})
