"""hf_ssl: semi-supervised fine-tuning of pretrained models as drop-in `transformers.Trainer` subclasses."""

from hf_ssl.assets.dinov2 import dinov2_path
from hf_ssl.assets.efficientnet_lite import efficientnet_lite2_path
from hf_ssl.assets.wheels import minilm_path, orange_text_path
from hf_ssl.augment.text import TextAugmenter
from hf_ssl.data.collators import ConsistencyCollator, SSLDataCollator
from hf_ssl.data.images import load_fashion_mnist, load_mnist_5k, to_pixel_values
from hf_ssl.data.pools import UNLABELED, load_text_dataset, sample_per_class, split_pools
from hf_ssl.graph.embeddings import encode
from hf_ssl.graph.propagation import LabelPropagator
from hf_ssl.graph.selection import propagate_cluster_labels, select_for_labeling
from hf_ssl.graph.zero_shot import class_text_embeddings, zero_shot_probabilities
from hf_ssl.methods.contrastive import contrastive_adapt
from hf_ssl.methods.ema import EMATeacher
from hf_ssl.methods.pseudo_labels import select_pseudo_labels, soft_targets
from hf_ssl.trainer.base_config import SSLConfig
from hf_ssl.trainer.base_trainer import SSLTrainer
from hf_ssl.trainer.consistency_config import ConsistencyConfig
from hf_ssl.trainer.consistency_trainer import ConsistencyTrainer
from hf_ssl.trainer.label_propagation_config import LabelPropagationConfig
from hf_ssl.trainer.label_propagation_trainer import LabelPropagationTrainer
from hf_ssl.trainer.round_loop import RoundCallback
from hf_ssl.trainer.round_report import RoundReport
from hf_ssl.trainer.self_training_config import SelfTrainingConfig
from hf_ssl.trainer.self_training_trainer import SelfTrainingTrainer

__version__ = "0.1.0"


def __getattr__(name: str):
    """`ImageAugmenter` is imported on first use: it needs kornia (the ``vision`` extra)."""
    if name == "ImageAugmenter":
        from hf_ssl.augment.image import ImageAugmenter

        return ImageAugmenter
    raise AttributeError(f"module 'hf_ssl' has no attribute {name!r}")

__all__ = [
    "SSLConfig", "SSLTrainer", "SelfTrainingConfig", "SelfTrainingTrainer", "RoundCallback", "RoundReport",
    "SSLDataCollator",
    "UNLABELED", "load_text_dataset", "sample_per_class", "split_pools", "select_pseudo_labels", "soft_targets",
    "minilm_path", "orange_text_path", "dinov2_path", "efficientnet_lite2_path", "load_fashion_mnist", "load_mnist_5k",
    "to_pixel_values",
    "LabelPropagator", "select_for_labeling", "propagate_cluster_labels", "encode", "contrastive_adapt",
    "LabelPropagationConfig", "LabelPropagationTrainer", "ConsistencyConfig", "ConsistencyTrainer",
    "ConsistencyCollator", "EMATeacher", "TextAugmenter", "ImageAugmenter", "zero_shot_probabilities",
    "class_text_embeddings",
]
