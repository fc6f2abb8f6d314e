"""Run by tests/test_multiprocess.py under `accelerate launch` (or plain python): tiny FixMatch run with FlexMatch
thresholds, an EMA teacher and distribution alignment that writes each rank's state to <out>/rank<i>.json (see
`helpers.mp_toy`)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

from helpers.mp_toy import COMMON_ARGS, run  # noqa: E402
from hf_ssl import ConsistencyConfig, ConsistencyTrainer  # noqa: E402


def make_args(out: str, batch_size: int) -> ConsistencyConfig:
    return ConsistencyConfig(output_dir=out, method="fixmatch", threshold_strategy="flexmatch", threshold=0.6,
                             use_ema_teacher=True, ema_decay=0.9, distribution_alignment=True, num_train_epochs=20,
                             graph_prior_weight=0.0, head_init="random",
                             per_device_train_batch_size=batch_size, logging_steps=1, **COMMON_ARGS)


def record(trainer: ConsistencyTrainer, metrics: dict) -> dict:
    return {"row_class": trainer.masker.state["row_class"].tolist(), "model_prior": trainer.model_prior.tolist(),
            "ema_classifier": trainer.ema.shadow["classifier.weight"].flatten().tolist(),
            "mask_rate": [r["mask_rate"] for r in trainer.epoch_records],
            "first_step": next(log for log in trainer.state.log_history if "labeled_loss" in log)}


if __name__ == "__main__":
    run(ConsistencyTrainer, make_args, record)
