"""The data of a run: its training split, evaluation split and labeled/unlabeled pools, the same for every arm.

- Text (``reuters-r8``, ``20newsgroups``): `hf_ssl.load_text_dataset`. A ``validation`` run carves
  ``validation_size`` rows out of the *train* split (stratified, seed `VALIDATION_SEED`) and evaluates on them; the
  test split is never loaded for it. A ``test`` run draws its pools from the whole train split and evaluates on
  the test split.
- Images (``fashion_mnist``, ``mnist_5k``): `hf_ssl.data.images.load_image_dataset`, validation rows carved from
  its train split the same way; pixels for the ``backbone`` of the data settings (its image processor's
  normalisation) at ``image_size``.

Pools are drawn by `hf_ssl.sample_per_class` (``labels_per_class`` per class at the run's seed) from the training
split, or from its first ``train_rows`` rows after a shuffle by the seed (`bench.common.first_rows`, as
`bench.common.fashion_pools` does), with an unlabeled pool of ``max_unlabeled`` rows. Every pool row keeps a ``row``
column, its index into the training split, so the frozen-embedding arms can index one embedding matrix of the
split. Evaluation uses the first ``eval_rows`` rows after a shuffle by `bench.common.FASHION_TEST_SEED` (all when
negative).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from bench.common import FASHION_TEST_SEED, first_rows, unlabeled_limit
from bench.suite.config import modality
from bench.suite.spec import ALL_LABELS, RunSpec
from hf_ssl import load_text_dataset, minilm_path, sample_per_class
from hf_ssl.assets.backbones import image_backbone_path
from hf_ssl.data.images import PixelSettings, load_image_dataset, pixel_settings

VALIDATION_SEED = 0
"""Seed of the validation carve-out: the same validation rows for every seed and arm."""


@dataclass(frozen=True)
class Pools:
    """A run's data, before tokenization or pixel conversion.

    Parameters:
        names (`list[str]`): class names.
        train (`Dataset`): the rows pools are drawn from (a full-label run trains on all of them), with ``row``.
        labeled (`Dataset`): the labeled pool (``label``, ``row``); empty for a full-label run.
        unlabeled (`Dataset`): the unlabeled pool (``ssl_truth``, ``row``); empty for a full-label run.
        evaluation (`Dataset`): the rows accuracy is measured on.
        modality (`str`): ``text`` or ``image``.
    """

    names: list[str]
    train: Dataset
    labeled: Dataset
    unlabeled: Dataset
    evaluation: Dataset
    modality: str


@functools.lru_cache(maxsize=4)
def splits(dataset: str, split: str, validation_size: int) -> tuple[Dataset, Dataset]:
    """(training split, evaluation split) of a dataset: train minus ``validation_size`` carved rows and those rows
    for ``split="validation"``, the train and test splits for ``split="test"``."""
    if split not in ("validation", "test"):
        raise ValueError(f"split must be 'validation' or 'test', got {split!r}")
    if split == "validation" and validation_size < 1:
        raise ValueError(f"split='validation' needs validation_size >= 1, got {validation_size}")
    if modality(dataset) == "text":
        raw = load_text_dataset(dataset, validation_size=validation_size if split == "validation" else 0,
                                seed=VALIDATION_SEED)
        return raw["train"], raw[split]
    raw = load_image_dataset(dataset.replace("_", "-"))
    if split == "test":
        return raw["train"], raw["test"]
    parts = raw["train"].train_test_split(test_size=validation_size, seed=VALIDATION_SEED,
                                          stratify_by_column="label")
    return parts["train"], parts["test"]


def build_pools(spec: RunSpec) -> Pools:
    """The pools and evaluation rows of ``spec`` (see the module docstring)."""
    data = spec.data
    train, evaluation = splits(spec.dataset, spec.split, data["validation_size"])
    train = first_rows(train, data["train_rows"], spec.seed)
    train = train.add_column("row", list(range(len(train))))
    evaluation = first_rows(evaluation, data["eval_rows"], FASHION_TEST_SEED)
    if spec.labels_per_class == ALL_LABELS:
        labeled, unlabeled = train.select([]), train.select([])
    else:
        labeled, unlabeled = sample_per_class(train, spec.labels_per_class, seed=spec.seed,
                                              max_unlabeled=unlabeled_limit(data["max_unlabeled"]))
    return Pools(names=list(train.features["label"].names), train=train, labeled=labeled, unlabeled=unlabeled,
                 evaluation=evaluation, modality=modality(spec.dataset))


def encoder_path(kind: str, data: dict[str, Any]) -> Any:
    """Folder of the packaged pretrained model of a run: MiniLM for text, the data settings' ``backbone`` for
    images."""
    return minilm_path() if kind == "text" else image_backbone_path(data["backbone"])


@functools.lru_cache(maxsize=2)
def backbone_pixels(backbone: str) -> PixelSettings:
    """How the packaged image backbone ``backbone`` takes pixels."""
    return pixel_settings(image_backbone_path(backbone))


def processor(kind: str, data: dict[str, Any]) -> Any:
    """The run's processing class: MiniLM's tokenizer for text, the backbone's image processor for images (whose
    normalisation the image augmenter follows)."""
    if kind == "text":
        return tokenizer()
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(image_backbone_path(data["backbone"]))


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    """The packaged MiniLM's tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def model_inputs(rows: Dataset, kind: str, data: dict[str, Any]) -> Dataset:
    """``rows`` as the model takes them: MiniLM token ids at ``max_length`` (text) or the backbone's
    ``pixel_values`` at ``image_size`` (images); labels and ``ssl_truth`` are kept, ``text`` and ``row`` dropped."""
    if kind == "image":
        return backbone_pixels(data["backbone"]).pixels(rows, size=data["image_size"])
    tok = tokenizer()

    def tokenize(batch: dict[str, list]) -> Any:
        return tok(batch["text"], truncation=True, max_length=data["max_length"])

    return rows.map(tokenize, batched=True, remove_columns=[c for c in ("text", "row") if c in rows.column_names])
