"""Base configuration shared by every hf_ssl trainer."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from hf_ssl.trainer.config_checks import (
    check_number_fields,
    check_output_dir,
    check_training_length,
    check_truth_column_name,
)


@dataclass
class SSLConfig(TrainingArguments):
    """`TrainingArguments` plus what every semi-supervised method needs.

    Every `TrainingArguments` field keeps its meaning; `HfArgumentParser` parses this class as it is. Only the
    fields below are new or have another default; each changed `TrainingArguments` default names the original and
    why it differs (also in docs/self_training.md). Every config rejects, when it is built: a non-whole number for
    an integer field (a whole float such as ``2.0`` is taken as ``2``), NaN or infinity for a float field (but
    ``max_grad_norm``), a run that trains nothing (``max_steps=0``, or ``num_train_epochs <= 0`` without
    ``max_steps``), an ``output_dir`` that is a file, and contradictory settings of its method.

    Parameters:
        unlabeled_batch_ratio (`float`, *optional*, defaults to `1.0`):
            μ: unlabeled (or pseudo-labeled) rows per labeled row in a training step; a finite number > 0.
        unlabeled_loss_weight (`float`, *optional*, defaults to `1.0`):
            λ: weight of the unlabeled loss term against the labeled loss; a finite number >= 0.
        truth_column (`str`, *optional*, defaults to `"ssl_truth"`):
            Column of the unlabeled pool holding hidden true labels, used for monitoring only (pseudo-label
            accuracy); it never reaches a loss. Not a label column, a model input or a column hf_ssl adds
            (``ssl_index``, ``ssl_target``, ``ssl_weight``).
        head_init (`str`, *optional*, defaults to `"random"`):
            How the classification head starts. Choices:

            - `"random"`: as the model was built.
            - `"linear_probe"`: LP-FT, fitted as a logistic regression on the frozen features of the labeled pool
              before any training (see `hf_ssl.methods.head_init`).
        num_train_epochs (`float`, *optional*, defaults to `30.0`):
            `TrainingArguments` default: `3.0`. Epochs are passes over the labeled pool, which is small (40 rows
            make 5 steps an epoch at batch size 8): 3 epochs would stop after a few optimizer steps.
        learning_rate (`float`, *optional*, defaults to `1e-4`):
            `TrainingArguments` default: `5e-5`. A run over a small labeled pool has only a few hundred optimizer
            steps; a higher rate lets them fit the new classification head (randomly initialised by default).
        logging_steps (`float`, *optional*, defaults to `10`):
            `TrainingArguments` default: `500`. Runs are a few hundred steps long: every 500 steps would log no
            training loss and no hf_ssl metric (mask rate, pseudo-label counts and accuracy) at all.
        per_device_eval_batch_size (`int`, *optional*, defaults to `32`):
            `TrainingArguments` default: `8`. Besides evaluation, hf_ssl runs the model without gradients over
            whole pools (self-training's pseudo-labels, the linear-probe head), where larger batches fit and run
            faster.
        save_total_limit (`int` or `None`, *optional*, defaults to `1`):
            `TrainingArguments` default: `None`. A checkpoint holds the model and its optimizer state (about three
            times the model's size) and `SelfTrainingTrainer` writes one at the end of every round: the latest is
            what a resume needs. With ``load_best_model_at_end`` the best checkpoint is kept too. `None` keeps all.
    """

    unlabeled_batch_ratio: float = field(
        default=1.0, metadata={"help": "μ: unlabeled rows drawn per labeled row in each training step (> 0)."}
    )
    unlabeled_loss_weight: float = field(
        default=1.0, metadata={"help": "λ: weight of the unlabeled loss against the labeled loss (>= 0)."}
    )
    truth_column: str = field(
        default="ssl_truth",
        metadata={"help": "Hidden true-label column of the unlabeled pool, for monitoring only; never trained on."},
    )
    head_init: str = field(
        default="random",
        metadata={"help": "Classification head start: 'random' (as built) or 'linear_probe' (LP-FT: a logistic "
                          "regression on the frozen features of the labeled pool, fitted before training)."},
    )
    num_train_epochs: float = field(default=30.0, metadata={"help": "Epochs over the labeled pool."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial AdamW learning rate."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Batch size per device for evaluation."})
    save_total_limit: int | None = field(
        default=1, metadata={"help": "Keep at most this many checkpoints (the latest, plus the best with "
                                     "load_best_model_at_end); None keeps all."})

    def __post_init__(self) -> None:
        check_number_fields(self)
        check_training_length(self.num_train_epochs, self.max_steps)
        check_output_dir(self.output_dir)
        check_truth_column_name(self.truth_column)
        super().__post_init__()
        if not (math.isfinite(self.unlabeled_batch_ratio) and self.unlabeled_batch_ratio > 0):
            raise ValueError(
                f"unlabeled_batch_ratio (μ) must be a finite number > 0, got {self.unlabeled_batch_ratio}; "
                "use e.g. 1.0 for as many unlabeled as labeled rows per step."
            )
        if not (math.isfinite(self.unlabeled_loss_weight) and self.unlabeled_loss_weight >= 0):
            raise ValueError(
                f"unlabeled_loss_weight (λ) must be a finite number >= 0, got {self.unlabeled_loss_weight}."
            )

        if self.head_init not in ("random", "linear_probe"):
            raise ValueError(f"head_init must be 'random' or 'linear_probe', got {self.head_init!r}.")

    def unlabeled_batch_size(self) -> int:
        """Per-device size of an unlabeled batch: round(μ × per_device_train_batch_size), at least 1."""
        return max(1, round(self.unlabeled_batch_ratio * self.per_device_train_batch_size))


def labeled_only_config(config: SSLConfig, **changes: object) -> SSLConfig:
    """A plain `SSLConfig` with the same `SSLConfig` fields as ``config`` (for a labeled-only baseline).

    Parameters:
        config (`SSLConfig`): any hf_ssl config.
        **changes: fields to override (e.g. ``output_dir``).
    """
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(SSLConfig) if f.init}
    return SSLConfig(**(values | changes))
