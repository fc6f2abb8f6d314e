"""Configuration of `LabelPropagationTrainer`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hf_ssl.graph.config import GraphConfig
from hf_ssl.trainer.base_config import SSLConfig


@dataclass
class LabelPropagationConfig(SSLConfig, GraphConfig):
    """`SSLConfig` for label propagation in the training loop (Iscen et al., CVPR 2019).

    After ``warmup_epochs`` of labeled-only training, the current model embeds the labeled and unlabeled pools,
    labels spread over a kNN graph of those embeddings, and training continues on labeled batches plus
    pseudo-labeled batches weighted by certainty (1 − normalised entropy) and by inverse class frequency, rescaled
    to mean 1 (so that ``unlabeled_loss_weight`` sets the scale of the pseudo-label loss); the propagation repeats
    every ``propagate_every`` epochs (0: never again).

    The defaults propagate once, before any training, over the pretrained model's embeddings, and start the
    classification head from a linear probe on the labeled pool (``head_init="linear_probe"``, LP-FT).

    Parameters:
        warmup_epochs (`float`, *optional*, defaults to `0.0`):
            Labeled-only epochs before the first propagation, >= 0; propagation starts at the first whole epoch after
            it, which must lie within training.
        propagate_every (`int`, *optional*, defaults to `0`):
            Epochs between propagations, >= 0; 0 propagates once, after the warm-up.
        min_certainty (`float`, *optional*, defaults to `0.0`):
            Drop pseudo-labels whose certainty is below this value, in [0, 1).
        certainty_fraction (`float`, *optional*, defaults to `1.0`):
            Keep only this fraction of the pseudo-labels, the most certain ones, in (0, 1] (1: all).
        class_weighting (`bool`, *optional*, defaults to `True`):
            Weight pseudo-labels by inverse class frequency.
        soft_labels (`bool`, *optional*, defaults to `False`):
            Train on the propagated distributions instead of their argmax.
        head_init (`str`, *optional*, defaults to `"linear_probe"`):
            As in `SSLConfig` (`"random"` or `"linear_probe"`), with `"linear_probe"` as this method's default.

        The graph fields ``n_neighbors``, ``alpha``, ``power``, ``pooling``, ``encode_batch_size`` and
        ``embedding_layer`` are those of `GraphConfig`.
    """

    warmup_epochs: float = field(default=0.0, metadata={"help": "Labeled-only epochs before propagating."})
    propagate_every: int = field(default=0, metadata={"help": "Epochs between propagations (0: once)."})
    min_certainty: float = field(default=0.0, metadata={"help": "Minimum certainty of a pseudo-label in [0, 1)."})
    certainty_fraction: float = field(default=1.0, metadata={"help": "Keep the most certain fraction, in (0, 1]."})
    class_weighting: bool = field(default=True, metadata={"help": "Weight pseudo-labels by inverse class frequency."})
    soft_labels: bool = field(default=False, metadata={"help": "Train on propagated distributions."})
    head_init: str = field(default="linear_probe", metadata={
        "help": "Classification head start: 'linear_probe' (LP-FT, fitted on the labeled pool) or 'random'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.propagate_every < 0:
            raise ValueError(f"propagate_every must be >= 0 epochs (0: propagate once), got {self.propagate_every}.")
        if not (math.isfinite(self.certainty_fraction) and 0 < self.certainty_fraction <= 1):
            raise ValueError(f"certainty_fraction must be in (0, 1], got {self.certainty_fraction}; e.g. 0.5.")
        if not (0 <= self.min_certainty < 1):
            raise ValueError(f"min_certainty must be in [0, 1), got {self.min_certainty}.")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}.")
        if self.max_steps < 0 and math.ceil(self.warmup_epochs) >= math.ceil(self.num_train_epochs):
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs:g} leaves no epoch to start after it within "
                f"num_train_epochs={self.num_train_epochs:g}: labels would never propagate and training would be "
                "labeled-only. Lower warmup_epochs or raise num_train_epochs.")
        self.check_graph()
