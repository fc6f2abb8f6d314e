"""The kNN-graph fields shared by the configs that spread labels over the model's own embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["GraphConfig"]


@dataclass(kw_only=True)
class GraphConfig:
    """Fields of the label-spreading graph over the model's embeddings of the labeled and unlabeled pools.

    Mixed into `LabelPropagationConfig` and `ConsistencyConfig` (its ``graph_prior_weight``); call `check_graph`
    from ``__post_init__``.

    Parameters:
        n_neighbors (`int`, *optional*, defaults to `10`):
            k of the kNN graph (>= 1).
        alpha (`float`, *optional*, defaults to `0.95`):
            Label-spreading α in (0, 1).
        power (`float`, *optional*, defaults to `3.0`):
            Edge weight = max(cos, 0) ** power.
        pooling (`str`, *optional*, defaults to `"auto"`):
            Embedding pooling: `"auto"`, `"mean"`, `"cls"` or `"pooler"`.
        encode_batch_size (`int`, *optional*, defaults to `64`):
            Batch size of the embedding passes (>= 1).
        embedding_layer (`int` or `None`, *optional*, defaults to `None`):
            Hidden state the graph pools (`encode`'s ``layer``: 0 = embeddings, negative from the end); `None` =
            the last hidden state. Needs pooling `"mean"`, `"cls"` or `"auto"` (not for dual encoders).
    """

    n_neighbors: int = field(default=10, metadata={"help": "k of the kNN graph."})
    alpha: float = field(default=0.95, metadata={"help": "Label-spreading alpha in (0, 1)."})
    power: float = field(default=3.0, metadata={"help": "Edge weight = max(cos, 0) ** power."})
    pooling: str = field(default="auto", metadata={"help": "Embedding pooling: auto, mean, cls or pooler."})
    encode_batch_size: int = field(default=64, metadata={"help": "Batch size of the embedding passes."})
    embedding_layer: int | None = field(default=None, metadata={
        "help": "Hidden state the graph pools (0 = embeddings, negative from the end); default: the last one."})

    def check_graph(self) -> None:
        """Reject graph settings that cannot work, naming the field."""
        if not (math.isfinite(self.alpha) and 0 < self.alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}; e.g. alpha=0.95.")
        if not (math.isfinite(self.power) and self.power > 0):
            raise ValueError(f"power must be a finite number > 0 (edge weight max(cos, 0) ** power), got {self.power}; "
                             "e.g. power=3.")
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}.")
        if self.pooling not in ("auto", "mean", "cls", "pooler"):
            raise ValueError(f"pooling must be one of auto, mean, cls, pooler; got {self.pooling!r}.")
        if self.embedding_layer is not None and self.pooling == "pooler":
            raise ValueError("embedding_layer needs pooling 'mean', 'cls' or 'auto', not 'pooler' (the pooler reads "
                             "the last layer only).")
        if self.encode_batch_size < 1:
            raise ValueError(f"encode_batch_size must be >= 1, got {self.encode_batch_size}.")
