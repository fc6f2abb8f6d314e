"""Run by tests/test_multiprocess.py under `accelerate launch` (or plain python): tiny self-training run that
writes what each rank saw to <out>/rank<i>.json (see `helpers.mp_toy`)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

from helpers.mp_toy import COMMON_ARGS, run  # noqa: E402
from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer  # noqa: E402


def make_args(out: str, batch_size: int) -> SelfTrainingConfig:
    return SelfTrainingConfig(output_dir=out, max_rounds=1, threshold=0.6, num_train_epochs=20,
                              per_device_train_batch_size=batch_size, **COMMON_ARGS)


def record(trainer: SelfTrainingTrainer, metrics: dict) -> dict:
    return {"pseudo_rows": trainer.pseudo_rows.tolist(), "pseudo_labels": trainer.pseudo_targets.argmax(1).tolist(),
            "round0_accuracy": trainer.rounds[0]["eval"]["eval_accuracy"],
            "train_loss": [r["train_loss"] for r in trainer.rounds],
            "graph_agreement": [r["check"]["graph_agreement"] for r in trainer.rounds],
            "graph_labels": trainer.check_labels.tolist(), "kept_round": trainer.kept_round}


if __name__ == "__main__":
    run(SelfTrainingTrainer, make_args, record)
