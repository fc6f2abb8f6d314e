"""hf_ssl: semi-supervised fine-tuning of pretrained models as drop-in `transformers.Trainer` subclasses."""

from .assets import minilm_path, orange_text_path
from .collators import ConsistencyCollator, SSLDataCollator
from .consistency_config import ConsistencyConfig
from .consistency_trainer import ConsistencyTrainer
from .contrastive import contrastive_adapt
from .data import UNLABELED, load_text_dataset, sample_per_class, split_pools
from .dinov2 import dinov2_path
from .ema import EMATeacher
from .embeddings import encode
from .image_data import load_fashion_mnist, load_mnist_5k, to_pixel_values
from .label_propagation_config import LabelPropagationConfig
from .label_propagation_trainer import LabelPropagationTrainer
from .propagation import LabelPropagator
from .pseudo_labels import select_pseudo_labels, soft_targets
from .selection import propagate_cluster_labels, select_for_labeling
from .self_training_config import SelfTrainingConfig
from .self_training_trainer import SelfTrainingTrainer
from .ssl_config import SSLConfig
from .ssl_trainer import SSLTrainer
from .text_augment import TextAugmenter
from .zero_shot import class_text_embeddings, zero_shot_probabilities

__version__ = "0.1.0"


def __getattr__(name: str):
    """`ImageAugmenter` is imported on first use: it needs kornia (the ``vision`` extra)."""
    if name == "ImageAugmenter":
        from .image_augment import ImageAugmenter

        return ImageAugmenter
    raise AttributeError(f"module 'hf_ssl' has no attribute {name!r}")

__all__ = [
    "SSLConfig", "SSLTrainer", "SelfTrainingConfig", "SelfTrainingTrainer", "SSLDataCollator",
    "UNLABELED", "load_text_dataset", "sample_per_class", "split_pools", "select_pseudo_labels", "soft_targets",
    "minilm_path", "orange_text_path", "dinov2_path", "load_fashion_mnist", "load_mnist_5k", "to_pixel_values",
    "LabelPropagator", "select_for_labeling", "propagate_cluster_labels", "encode", "contrastive_adapt",
    "LabelPropagationConfig", "LabelPropagationTrainer", "ConsistencyConfig", "ConsistencyTrainer",
    "ConsistencyCollator", "EMATeacher", "TextAugmenter", "ImageAugmenter", "zero_shot_probabilities",
    "class_text_embeddings",
]
