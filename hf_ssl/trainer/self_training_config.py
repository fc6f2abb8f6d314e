"""Configuration of `SelfTrainingTrainer`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hf_ssl.trainer.base_config import SSLConfig


@dataclass
class SelfTrainingConfig(SSLConfig):
    """`SSLConfig` for confidence-thresholded self-training.

    Round 0 trains on the labeled pool only; each later round pseudo-labels the unlabeled pool with the
    previous round's model and trains on labeled batches plus pseudo-labeled batches (μ per labeled
    row, weight λ). Each round runs the same number of optimizer steps (``num_train_epochs`` over the
    labeled pool), so the true labels keep their weight however many pseudo-labels are added.

    Args:
        threshold: minimum confidence in (0, 1] for a pseudo-label.
        k_per_class: keep at most this many most-confident rows per predicted class (class-balanced).
        class_fraction: per predicted class, keep only the most confident fraction of its rows.
        max_rounds: pseudo-labeling rounds after the labeled-only round (0 = plain fine-tuning).
        reset_model_each_round: start each round from the initial (pretrained) weights; False continues
            from the previous round's model.
        soft_labels: train on the teacher's probabilities (distillation) instead of hard labels.
        soft_label_temperature: temperature T of the soft targets (T < 1 sharpens).
        weight_by_confidence: weight each pseudo-labeled row's loss by the teacher's confidence.
        eval_each_round: evaluate ``eval_dataset`` at the end of every round (round 0 = labeled-only).
    """

    threshold: float = field(default=0.7, metadata={"help": "Minimum teacher confidence in (0, 1] for a pseudo-label."})
    k_per_class: int | None = field(
        default=None, metadata={"help": "At most this many most-confident pseudo-labels per predicted class."}
    )
    class_fraction: float | None = field(
        default=None, metadata={"help": "Keep the most confident fraction in (0, 1] of each predicted class."}
    )
    max_rounds: int = field(default=2, metadata={"help": "Pseudo-labeling rounds after the labeled-only round."})
    reset_model_each_round: bool = field(
        default=True, metadata={"help": "Retrain each round from the initial weights (False: continue training)."}
    )
    soft_labels: bool = field(default=False, metadata={"help": "Distil the teacher's probabilities (soft labels)."})
    soft_label_temperature: float = field(default=1.0, metadata={"help": "Temperature of soft targets (> 0)."})
    weight_by_confidence: bool = field(default=False, metadata={"help": "Weight pseudo-label losses by confidence."})
    eval_each_round: bool = field(default=True, metadata={"help": "Evaluate eval_dataset after every round."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and 0 < self.threshold <= 1):
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}; e.g. threshold=0.9.")
        if self.k_per_class is not None and self.k_per_class < 1:
            raise ValueError(f"k_per_class must be None or >= 1, got {self.k_per_class}.")
        if self.class_fraction is not None and not (0 < self.class_fraction <= 1):
            raise ValueError(f"class_fraction must be None or in (0, 1], got {self.class_fraction}.")
        if self.max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {self.max_rounds}.")
        if not (math.isfinite(self.soft_label_temperature) and self.soft_label_temperature > 0):
            raise ValueError(f"soft_label_temperature must be > 0, got {self.soft_label_temperature}.")
