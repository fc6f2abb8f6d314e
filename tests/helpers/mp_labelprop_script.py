"""Run by tests/test_multiprocess.py under `accelerate launch` (or plain python): tiny label-propagation run that
writes what each rank holds (pseudo-labels, propagation records, the embeddings of each propagation) to
<out>/rank<i>.json and <out>/rank<i>_embeddings.npz."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

import numpy as np  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

import hf_ssl.trainer.graph_spreading as trainer_module  # noqa: E402
from helpers.tiny import text_pool, tiny_bert  # noqa: E402
from hf_ssl import LabelPropagationConfig, LabelPropagationTrainer, sample_per_class  # noqa: E402
from hf_ssl.data.metrics import classification_metrics  # noqa: E402
from hf_ssl.scripts.utils import leave_together  # noqa: E402

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


def main(tokenizer_dir: str, out: str, batch_size: int) -> None:
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    # 12 labeled + 109 unlabeled rows: the 121 rows to embed split 60/61 over 2 processes (uneven shards)
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 121), k=4, seed=0)
    evaluation = text_pool(tokenizer, 61, seed=1)
    args = LabelPropagationConfig(output_dir=out, num_train_epochs=16, warmup_epochs=8, propagate_every=4,
                                  n_neighbors=5, per_device_train_batch_size=batch_size, learning_rate=1e-2,
                                  encode_batch_size=16, report_to="none", save_strategy="no", use_cpu=True, seed=0,
                                  disable_tqdm=True, logging_steps=1)
    trainer_module.encode = recording_encode
    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                               eval_dataset=evaluation, processing_class=tokenizer,
                               compute_metrics=classification_metrics)
    trainer.train()
    metrics = trainer.evaluate()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    record = {"world_size": args.world_size, "eval_accuracy": metrics["eval_accuracy"],
              "pseudo": trainer.history, "propagations": trainer.propagations,
              "steps": trainer.state.global_step, "unlabeled_batches": trainer.unlabeled_batches_consumed,
              "losses": losses, "labeled": len(labeled), "unlabeled": len(unlabeled)}
    with open(os.path.join(out, f"rank{args.process_index}.json"), "w") as handle:
        json.dump(record, handle)
    np.savez(os.path.join(out, f"rank{args.process_index}_embeddings.npz"), *EMBEDDINGS)
    leave_together(trainer.accelerator)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
