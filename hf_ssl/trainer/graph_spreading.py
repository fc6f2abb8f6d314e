"""Label spreading over the trainer's own embeddings: the piece that the graph-using trainers opt into."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_ssl.data.validation import label_column_of
from hf_ssl.graph.embeddings import encode
from hf_ssl.graph.propagation import LabelPropagator

__all__ = ["GraphSpreadingMixin", "spread_over_pools"]


def spread_over_pools(trainer: Any, propagator: LabelPropagator, *, pooling: str = "auto", batch_size: int = 64,
                      layer: int | None = None) -> LabelPropagator:
    """Embed the labeled and unlabeled pools of ``trainer`` with its current model (`encode`, L2-normalised) and
    fit ``propagator`` on the embeddings with the labeled rows' labels.

    Parameters:
        trainer (`SSLTrainer`): its model, ``train_dataset`` (labeled) and ``unlabeled_dataset`` are used.
        propagator (`LabelPropagator`): the estimator to fit (labeled rows first, then the unlabeled pool).
        pooling (`str`, *optional*, defaults to `"auto"`): `encode`'s ``pooling``.
        batch_size (`int`, *optional*, defaults to `64`): rows per embedding pass.
        layer (`int` or `None`, *optional*, defaults to `None`): `encode`'s ``layer``.

    Returns:
        ``propagator``, fitted. Every process gets the same result.
    """
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    labeled, unlabeled = trainer.train_dataset, trainer.unlabeled_dataset
    columns = trainer.model_input_columns(labeled)
    # Each pool is encoded on its own: their columns may differ in type (e.g. int32 and int64 token ids).
    embeddings = np.concatenate([
        encode(model, pool.select_columns(columns), trainer.processing_class, pooling=pooling, normalize=True,
               batch_size=batch_size, accelerator=trainer.accelerator if args.world_size > 1 else None,
               show_progress=not args.disable_tqdm, layer=layer)
        for pool in (labeled, unlabeled)])
    model.train(was_training)
    labels = np.asarray(labeled[label_column_of(labeled)])
    return propagator.fit(embeddings, np.concatenate([labels, np.full(len(unlabeled), -1)]))


class GraphSpreadingMixin:
    """Adds `spread_labels` to an `SSLTrainer` whose config includes `GraphConfig`.

    Put it before `SSLTrainer` in the bases: ``class MyTrainer(GraphSpreadingMixin, SSLTrainer)``.
    """

    def check_graph_size(self) -> None:
        """Reject ``n_neighbors`` that the two pools together cannot provide, before anything trains."""
        rows = len(self.train_dataset) + len(self.unlabeled_dataset)
        if self.args.n_neighbors >= rows:
            raise ValueError(
                f"n_neighbors={self.args.n_neighbors} needs more rows than that to build the kNN graph, but "
                f"train_dataset and unlabeled_dataset have {rows} together. Lower n_neighbors (e.g. 10) or pass "
                "larger pools."
            )

    def spread_labels(self) -> LabelPropagator:
        """Embed the labeled and unlabeled pools with the current model and spread the labels over a kNN graph of
        the embeddings (the config's graph fields).

        Returns:
            The fitted `LabelPropagator` (labeled rows first, then the unlabeled pool). Every process gets the
            same result.
        """
        args = self.args
        propagator = LabelPropagator(n_neighbors=args.n_neighbors, alpha=args.alpha, power=args.power,
                                     random_state=args.seed)
        return spread_over_pools(self, propagator, pooling=args.pooling, batch_size=args.encode_batch_size,
                                 layer=args.embedding_layer)
