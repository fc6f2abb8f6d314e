"""Label spreading over the trainer's own embeddings: the piece that the graph-using trainers opt into."""

from __future__ import annotations

import numpy as np

from hf_ssl.data.validation import label_column_of
from hf_ssl.graph.embeddings import encode
from hf_ssl.graph.propagation import LabelPropagator

__all__ = ["GraphSpreadingMixin"]


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
        the embeddings.

        Returns:
            The fitted `LabelPropagator` (labeled rows first, then the unlabeled pool). Every process gets the
            same result.
        """
        args = self.args
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        columns = self.model_input_columns(self.train_dataset)
        # Each pool is encoded on its own: their columns may differ in type (e.g. int32 and int64 token ids).
        embeddings = np.concatenate([
            encode(model, pool.select_columns(columns), self.processing_class, pooling=args.pooling, normalize=True,
                   batch_size=args.encode_batch_size, accelerator=self.accelerator if args.world_size > 1 else None,
                   show_progress=not args.disable_tqdm, layer=args.embedding_layer)
            for pool in (self.train_dataset, self.unlabeled_dataset)])
        model.train(was_training)
        labels = np.asarray(self.train_dataset[label_column_of(self.train_dataset)])
        y = np.concatenate([labels, np.full(len(self.unlabeled_dataset), -1)])
        return LabelPropagator(n_neighbors=args.n_neighbors, alpha=args.alpha, power=args.power,
                               random_state=args.seed).fit(embeddings, y)
