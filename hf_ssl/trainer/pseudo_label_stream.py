"""A stream of pseudo-labeled rows and its loss: the piece that the pseudo-labeling trainers opt into."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_ssl.methods.losses import soft_cross_entropy

__all__ = ["PseudoLabelStreamMixin"]


class PseudoLabelStreamMixin:
    """Adds a pseudo-labeled stream to an `SSLTrainer` and trains on it beside the labeled batches.

    Each row of the stream carries a target distribution (``ssl_target``) and a loss weight (``ssl_weight``). While
    a stream is set, every training step adds λ (``unlabeled_loss_weight``) × the weighted soft cross-entropy of one
    batch of the stream to the labeled loss. Put it before `SSLTrainer` in the bases:
    ``class MyTrainer(PseudoLabelStreamMixin, SSLTrainer)``.
    """

    def set_pseudo_label_stream(self, rows: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                                start_batch: int = 0, name: str = "pseudo_labels") -> None:
        """Stream rows of the unlabeled pool with target distributions and loss weights; no rows clear the stream,
        so that training goes on with the labeled batches only.

        Parameters:
            rows (`np.ndarray`): row indices into ``unlabeled_dataset``.
            targets (`np.ndarray`): ``(len(rows), num_labels)`` target distributions.
            weights (`np.ndarray`): ``(len(rows),)`` loss weights.
            start_batch (`int`, defaults to `0`): batches already consumed (resume).
            name (`str`, defaults to `"pseudo_labels"`): a label for the stream, stored with the state.
        """
        if len(rows) == 0:
            self.clear_unlabeled_stream()
            return
        pseudo = self.unlabeled_dataset.select(rows)
        pseudo = pseudo.add_column("ssl_index", np.asarray(rows).tolist())
        pseudo = pseudo.add_column("ssl_target", np.asarray(targets, dtype=np.float32).tolist())
        pseudo = pseudo.add_column("ssl_weight", np.asarray(weights, dtype=np.float32).tolist())
        self.set_unlabeled_stream(pseudo, start_batch=start_batch, name=name)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Labeled loss, plus λ × weighted soft cross-entropy on a batch of the pseudo-labeled stream while one is
        set and the model is training."""
        if not model.training or not self.has_unlabeled_stream():
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labeled_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        pseudo_inputs, extra = self.split_ssl_columns(self.next_unlabeled_batch(), self.args.truth_column)
        logits = model(**pseudo_inputs).logits
        pseudo_loss = soft_cross_entropy(logits, extra["ssl_target"], extra["ssl_weight"])
        loss = labeled_loss + self.args.unlabeled_loss_weight * pseudo_loss
        self.record_metric("labeled_loss", labeled_loss)
        self.record_metric("pseudo_label_loss", pseudo_loss)
        self.record_metric("pseudo_label_weight", extra["ssl_weight"].mean())
        truth = extra.get(self.args.truth_column)
        if truth is not None:
            self.record_metric("pseudo_label_batch_accuracy",
                               (extra["ssl_target"].argmax(-1) == truth).float().mean())
        return (loss, outputs) if return_outputs else loss
