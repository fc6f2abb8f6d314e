"""Configuration of `SelfTrainingTrainer`."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from hf_ssl.trainer.base_config import SSLConfig
from hf_ssl.trainer.config_checks import check_graph_prior_weight

SAFEGUARDS = ("graph", "none")
"""The choices of ``SelfTrainingConfig.safeguard``."""


@dataclass
class SelfTrainingConfig(SSLConfig):
    """`SSLConfig` for confidence-thresholded self-training.

    Round 0 trains on the labeled pool only; each later round pseudo-labels the unlabeled pool with the
    previous round's model and trains on labeled batches plus pseudo-labeled batches (μ per labeled
    row, weight λ). Each round runs the same number of optimizer steps (``num_train_epochs`` over the
    labeled pool), so the true labels keep their weight however many pseudo-labels are added.

    Parameters:
        threshold (`float`, *optional*, defaults to `0.7`):
            Minimum teacher confidence for a pseudo-label, in (0, 1].
        k_per_class (`int` or `None`, *optional*, defaults to `None`):
            Keep at most this many most-confident rows per predicted class (class-balanced); >= 1, or `None` for
            no cap.
        class_fraction (`float` or `None`, *optional*, defaults to `None`):
            Per predicted class, keep only the most confident fraction of its rows, in (0, 1]; `None` keeps all.
        max_rounds (`int`, *optional*, defaults to `2`):
            Pseudo-labeling rounds after the labeled-only round, >= 0 (0: plain fine-tuning).
        reset_model_each_round (`bool`, *optional*, defaults to `True`):
            Start each round from the initial (pretrained) weights; `False` continues from the previous round's
            model.
        soft_labels (`bool`, *optional*, defaults to `False`):
            Train on the teacher's probabilities (distillation) instead of hard labels.
        soft_label_temperature (`float`, *optional*, defaults to `1.0`):
            Temperature T of the soft targets, > 0 (T < 1 sharpens).
        weight_by_confidence (`bool`, *optional*, defaults to `False`):
            Weight each pseudo-labeled row's loss by the teacher's confidence.
        graph_prior_weight (`float`, *optional*, defaults to `0.5`):
            w in [0, 1] mixes, into the teacher's probabilities of every unlabeled row, the class that label spreading
            over the initial model's embeddings of both pools gives the row (the safeguard's graph):
            (1 − w)·p + w·onehot(graph class), before the threshold and the per-class caps. 0 turns it off. With
            w = 0.5 and ``threshold`` τ > 0.5 a row is pseudo-labeled only with its graph class, and only where the
            model gives that class at least 2τ − 1 (0.4 at the default τ 0.7). Costs the safeguard's embedding pass
            when ``safeguard="none"``.
        eval_each_round (`bool`, *optional*, defaults to `True`):
            Evaluate ``eval_dataset`` at the end of every round (round 0 = labeled-only).
        safeguard (`str`, *optional*, defaults to `"graph"`):
            `"graph"`: check every round against label spreading over the initial model's embeddings of both pools
            (graph agreement, no held-out labels needed) and keep the model of the best round by that check, round 0
            (labeled-only) included, saying so in the log, on the console and on the model card when it is not the
            last round; costs one embedding pass over both pools at the start and one prediction of the unlabeled
            pool at the end of the last round. `"none"`: keep the last round's model, check nothing. With
            ``load_best_model_at_end=True`` the Trainer's best checkpoint is kept and the check only reports.
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
    graph_prior_weight: float = field(default=0.5, metadata={
        "help": "Weight in [0, 1] of the label-spreading class mixed into the teacher's probabilities (0: off)."})
    eval_each_round: bool = field(default=True, metadata={"help": "Evaluate eval_dataset after every round."})
    safeguard: str = field(default="graph", metadata={
        "help": "'graph': keep the round that agrees best with label spreading over the initial embeddings; "
                "'none': keep the last round."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and 0 < self.threshold <= 1):
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}; e.g. threshold=0.9.")
        if self.k_per_class is not None and self.k_per_class < 1:
            raise ValueError(f"k_per_class must be None or >= 1, got {self.k_per_class}.")
        if self.class_fraction is not None and not (0 < self.class_fraction <= 1):
            raise ValueError(f"class_fraction must be None or in (0, 1], got {self.class_fraction}.")
        if self.safeguard not in SAFEGUARDS:
            raise ValueError(f"safeguard must be one of {', '.join(map(repr, SAFEGUARDS))}, got {self.safeguard!r}; "
                             "'none' keeps the last round's model.")
        check_graph_prior_weight(self.graph_prior_weight)
        if self.max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {self.max_rounds}.")
        if not (math.isfinite(self.soft_label_temperature) and self.soft_label_temperature > 0):
            raise ValueError(f"soft_label_temperature must be > 0, got {self.soft_label_temperature}.")
        if self.soft_label_temperature != 1 and not self.soft_labels:
            warnings.warn(f"SelfTrainingConfig: soft_label_temperature={self.soft_label_temperature} has no effect "
                          "without soft_labels=True.", UserWarning, stacklevel=3)
