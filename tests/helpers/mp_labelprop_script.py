"""Run by tests/test_multiprocess.py under `accelerate launch` (or plain python): tiny label-propagation run that
writes what each rank holds (pseudo-labels, propagation records, the embeddings of each propagation) to
<out>/rank<i>.json and <out>/rank<i>_embeddings.npz (see `helpers.mp_toy`)."""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

import numpy as np  # noqa: E402

import hf_ssl.trainer.graph_spreading as trainer_module  # noqa: E402
from helpers.mp_toy import COMMON_ARGS, run  # noqa: E402
from hf_ssl import LabelPropagationConfig, LabelPropagationTrainer  # noqa: E402

EMBEDDINGS: list[np.ndarray] = []
_encode = trainer_module.encode


def recording_encode(*args: Any, **kwargs: Any) -> np.ndarray:
    """`encode` as the trainer calls it, keeping a copy of what it returned on this rank."""
    result = _encode(*args, **kwargs)
    EMBEDDINGS.append(np.array(result, copy=True))
    return result


class RecordingTrainer(LabelPropagationTrainer):
    """Keeps the pseudo-labels of every propagation (the trainer itself keeps the last one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[dict[str, list]] = []

    def propagate(self, epoch: int = 0) -> dict[str, Any]:
        record = super().propagate(epoch)
        self.history.append({k: v.tolist() for k, v in self.pseudo.items()})
        return record


def make_args(out: str, batch_size: int) -> LabelPropagationConfig:
    return LabelPropagationConfig(output_dir=out, num_train_epochs=16, warmup_epochs=8, propagate_every=4,
                                  n_neighbors=5, per_device_train_batch_size=batch_size, encode_batch_size=16,
                                  logging_steps=1, **COMMON_ARGS)


def record(trainer: RecordingTrainer, metrics: dict) -> dict:
    np.savez(os.path.join(trainer.args.output_dir, f"rank{trainer.args.process_index}_embeddings.npz"), *EMBEDDINGS)
    return {"pseudo": trainer.history, "propagations": trainer.propagations,
            "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e]}


if __name__ == "__main__":
    # 12 labeled + 109 unlabeled rows: the 121 rows to embed split 60/61 over 2 processes (uneven shards)
    trainer_module.encode = recording_encode
    run(RecordingTrainer, make_args, record)
