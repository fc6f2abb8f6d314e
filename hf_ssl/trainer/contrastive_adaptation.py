"""Contrastive adaptation of `ConsistencyTrainer` (``contrastive_steps`` > 0): SimCLR on the unlabeled pool at the
start of `train`, unless resuming (a checkpoint already holds the adapted weights)."""

from __future__ import annotations

from typing import Any

import torch
from accelerate.logging import get_logger

from hf_ssl.methods.contrastive import contrastive_adapt

logger = get_logger(__name__)

__all__ = ["ContrastiveAdaptationMixin"]


class ContrastiveAdaptationMixin:
    """Adds the contrastive adaptation to an `SSLTrainer` with an ``augmenter`` and a config with the
    ``contrastive_*`` fields.

    Call `init_contrastive_adaptation` from ``__init__``; `train` then adapts before training when it is due.

    Attributes:
        contrastive_record (`dict` or `None`): the SimCLR adaptation's steps and losses (and the refitted head's
            record), None until it ran.
    """

    def init_contrastive_adaptation(self) -> None:
        """No record yet; reject an unlabeled pool smaller than one SimCLR batch before anything trains."""
        config = self.args
        self.contrastive_record: dict[str, Any] | None = None
        if config.contrastive_steps and len(self.unlabeled_dataset) < config.contrastive_batch_size:
            raise ValueError(f"contrastive_batch_size={config.contrastive_batch_size} is larger than the unlabeled "
                             f"pool ({len(self.unlabeled_dataset)} rows); lower it or pass a larger pool.")

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`, preceded by the contrastive adaptation when ``contrastive_steps`` > 0 and not resuming
        (a checkpoint already holds the adapted weights)."""
        if self.args.contrastive_steps and not resume_from_checkpoint and self.contrastive_record is None:
            self.adapt_to_unlabeled_pool()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def adapt_to_unlabeled_pool(self) -> dict[str, Any]:
        """SimCLR on two strong views of the unlabeled pool (`contrastive_adapt`), then the linear-probe head is
        refitted on the adapted features if ``head_init="linear_probe"``. Every process runs the same seeded steps.
        """
        config = self.args
        pool = self.unlabeled_dataset.select_columns(self.model_input_columns(self.unlabeled_dataset))
        generator = torch.Generator().manual_seed(config.seed)
        loader = torch.utils.data.DataLoader(pool, batch_size=config.contrastive_batch_size, shuffle=True,
                                             drop_last=True, generator=generator, collate_fn=self.data_collator)
        model = self.accelerator.unwrap_model(self.model)
        record = contrastive_adapt(model, loader, self.augmenter, steps=config.contrastive_steps,
                                   learning_rate=config.contrastive_learning_rate or config.learning_rate,
                                   temperature=config.contrastive_temperature, seed=config.seed)
        if config.head_init == "linear_probe":
            record["head_init"] = self.head_init_record = self.init_head_from_probe()
        self.contrastive_record = record
        # flushed with the first training log line (Trainer.train starts a fresh log history)
        self.record_metric("contrastive_loss_first", record["losses"][0][1], mode="train")
        self.record_metric("contrastive_loss_last", record["losses"][-1][1], mode="train")
        logger.info(f"contrastive adaptation: {record}", main_process_only=True)
        return record
