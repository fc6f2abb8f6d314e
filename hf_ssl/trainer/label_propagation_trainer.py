"""`LabelPropagationTrainer`: label propagation over the model's own embeddings, inside the training loop.

After an optional labeled-only warm-up, the current model embeds the labeled and unlabeled pools;
`LabelPropagator` spreads the labels over a kNN graph of those embeddings; training continues on labeled
batches plus pseudo-labeled batches weighted by certainty and inverse class frequency, and the propagation
repeats every few epochs if asked (Iscen et al., "Label Propagation for Deep Semi-supervised Learning",
CVPR 2019). By default it runs once, before training, over the pretrained embeddings.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger

from hf_ssl.trainer.base_trainer import SSLTrainer
from hf_ssl.trainer.graph_spreading import GraphSpreadingMixin
from hf_ssl.trainer.label_propagation_config import LabelPropagationConfig
from hf_ssl.trainer.model_card import format_cell, format_counts
from hf_ssl.trainer.pass_rate_warnings import WarnFewPseudoLabels
from hf_ssl.trainer.pseudo_label_stream import PseudoLabelStreamMixin
from hf_ssl.trainer.schedule import EpochSchedule, epochs_started

logger = get_logger(__name__)

__all__ = ["LabelPropagationTrainer"]

RECORDS_FILE = "label_propagation.json"


class LabelPropagationTrainer(PseudoLabelStreamMixin, GraphSpreadingMixin, SSLTrainer):
    """Label propagation in the loop as a `transformers.Trainer`.

    Parameters:
        Those of `SSLTrainer`, with ``args`` a `LabelPropagationConfig`; ``unlabeled_dataset`` is required.

    Attributes:
        propagations (`list[dict]`): one record per propagation (rows, certainty, per-class counts, accuracy
            against the hidden truth column when present), also written to ``output_dir/label_propagation.json``.
        pseudo (`dict[str, np.ndarray]` or `None`): the current pseudo-labels: ``rows`` of the unlabeled pool,
            ``targets`` and loss ``weights``.
    """

    config_class = LabelPropagationConfig
    method_name = "label_propagation"
    method_title = "label propagation in the training loop"
    method_description = (
        "The model embeds the labeled and unlabeled pools (after an optional labeled-only warm-up, and again every "
        "few epochs if configured), labels spread over a kNN graph of those embeddings (label spreading), and "
        "training continues on labeled batches "
        "plus pseudo-labeled batches weighted by certainty (1 - normalised entropy) and inverse class frequency "
        "(rescaled to mean 1)."
    )
    paper = {"title": "Label Propagation for Deep Semi-supervised Learning (Iscen et al., CVPR 2019)",
             "url": "https://arxiv.org/abs/1904.04717"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.unlabeled_dataset is None:
            raise ValueError("LabelPropagationTrainer needs unlabeled_dataset=.")
        self.check_graph_size()
        self._check_warmup_fits()
        self.propagations: list[dict[str, Any]] = []
        self.last_propagation_epoch = -1
        self.pseudo: dict[str, np.ndarray] | None = None
        self.add_callback(EpochSchedule(self.propagate, lambda: self.last_propagation_epoch,
                                        self.args.warmup_epochs, self.args.propagate_every))
        self.add_callback(WarnFewPseudoLabels("ssl_propagation_pseudo_labeled", len(self.unlabeled_dataset)))

    def _check_warmup_fits(self) -> None:
        """With ``max_steps`` set, reject a warm-up that outlasts training (labels would never propagate)."""
        args = self.args
        if args.max_steps > 0:
            epochs = epochs_started(args, len(self.train_dataset))
            if math.ceil(args.warmup_epochs) >= epochs:
                raise ValueError(
                    f"warmup_epochs={args.warmup_epochs} but max_steps={args.max_steps} ends training within "
                    f"{epochs} epoch(s) of train_dataset: labels would never propagate and training would be "
                    "labeled-only. Lower warmup_epochs or raise max_steps."
                )

    def propagate(self, epoch: int = 0) -> dict[str, Any]:
        """Embed both pools with the current model, spread the labels, and stream the pseudo-labels.

        Parameters:
            epoch (`int`, defaults to `0`): the epoch this propagation precedes (recorded).
        """
        args = self.args
        spread = self.spread_labels()
        n = len(self.train_dataset)
        dist = spread.label_distributions_[n:]
        certainty = spread.certainty_[n:]
        predicted = dist.argmax(axis=1)
        rows = np.flatnonzero((spread.transduction_[n:] >= 0) & (certainty >= args.min_certainty))
        if args.certainty_fraction < 1 and len(rows):
            keep = max(1, math.ceil(args.certainty_fraction * len(rows)))
            rows = np.sort(rows[np.argsort(-certainty[rows], kind="stable")[:keep]])
        weights = certainty[rows].astype(np.float32)
        if args.class_weighting and len(rows):
            counts = np.bincount(predicted[rows], minlength=self.num_labels).astype(np.float64)
            per_class = np.where(counts > 0, len(rows) / (self.num_labels * np.maximum(counts, 1)), 0.0)
            weights = weights * per_class[predicted[rows]].astype(np.float32)
        if weights.sum() > 0:
            # Certainties of spread distributions are small when α is near 1: the weights rank rows, rescaled to
            # mean 1 so that unlabeled_loss_weight alone sets the pseudo-label loss's scale.
            weights = weights * np.float32(len(weights) / weights.sum())
        targets = dist[rows] if args.soft_labels else np.eye(self.num_labels, dtype=np.float32)[predicted[rows]]
        self.pseudo = {"rows": rows, "targets": targets.astype(np.float32), "weights": weights}
        self.last_propagation_epoch = epoch
        self.set_pseudo_label_stream(rows, targets, weights, name=f"propagation_epoch_{epoch}")
        record = self._record(epoch, rows, predicted, certainty)
        logger.info(f"Propagation before epoch {epoch}: {record}", main_process_only=True)
        return record

    def _record(self, epoch: int, rows: np.ndarray, predicted: np.ndarray, certainty: np.ndarray) -> dict[str, Any]:
        record: dict[str, Any] = {
            "epoch": epoch, "pseudo_labeled": int(len(rows)),
            "mean_certainty": float(certainty[rows].mean()) if len(rows) else 0.0,
            "per_class": dict(zip(self.class_names, np.bincount(predicted[rows], minlength=self.num_labels).tolist(),
                                  strict=True)),
        }
        truth = self.truth_labels()
        if truth is not None:
            record["pseudo_label_accuracy"] = float((predicted[rows] == truth[rows]).mean()) if len(rows) else 0.0
            record["pool_accuracy"] = float((predicted == truth).mean())
        self.propagations.append(record)
        self.log({f"ssl_propagation_{k}": float(v) for k, v in record.items() if not isinstance(v, dict)})
        self.save_json(RECORDS_FILE, {"propagations": self.propagations})
        return record

    # ----------------------------------------------------------------- state and card
    def ssl_state_dict(self) -> dict[str, Any]:
        state = super().ssl_state_dict() | {"last_propagation_epoch": self.last_propagation_epoch,
                                            "propagations_json": json.dumps(self.propagations)}
        if self.pseudo is not None:
            state |= {f"pseudo_{k}": torch.from_numpy(np.asarray(v)) for k, v in self.pseudo.items()}
        return state

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        self.last_propagation_epoch = int(state["last_propagation_epoch"])
        self.propagations = json.loads(state["propagations_json"])
        if "pseudo_rows" in state:
            self.pseudo = {k: state[f"pseudo_{k}"].numpy() for k in ("rows", "targets", "weights")}
            self.set_pseudo_label_stream(self.pseudo["rows"], self.pseudo["targets"], self.pseudo["weights"],
                                         start_batch=self.unlabeled_batches_consumed,
                                         name=f"propagation_epoch_{self.last_propagation_epoch}")

    def card_hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return super().card_hyperparameters() | {
            "warmup_epochs": args.warmup_epochs, "propagate_every": args.propagate_every,
            "certainty_fraction": args.certainty_fraction,
            "n_neighbors": args.n_neighbors, "alpha": args.alpha, "power": args.power,
            "class_weighting": args.class_weighting, "soft_labels": args.soft_labels}

    def card_statistics(self) -> tuple[list[str], list[list[Any]]]:
        header = ["epoch", "pseudo-labeled rows", "mean certainty", "pseudo-label accuracy (hidden truth)",
                  "per class"]
        rows = [[r["epoch"], r["pseudo_labeled"], format_cell(r["mean_certainty"]),
                 format_cell(r.get("pseudo_label_accuracy")), format_counts(r["per_class"])] for r in self.propagations]
        return header, rows
