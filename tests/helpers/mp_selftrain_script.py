"""Run by tests/test_multiprocess.py under `accelerate launch` (or plain python): tiny self-training run
that writes what each rank saw to <out>/rank<i>.json."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

from transformers import BertTokenizerFast  # noqa: E402

from helpers.tiny import text_pool, tiny_bert  # noqa: E402
from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer, sample_per_class  # noqa: E402
from hf_ssl.data.metrics import classification_metrics  # noqa: E402
from hf_ssl.scripts.utils import leave_together  # noqa: E402


def main(tokenizer_dir: str, out: str, batch_size: int) -> None:
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 121), k=4, seed=0)
    evaluation = text_pool(tokenizer, 61, seed=1)
    args = SelfTrainingConfig(output_dir=out, max_rounds=1, threshold=0.6, num_train_epochs=20,
                              per_device_train_batch_size=batch_size, learning_rate=1e-2, report_to="none",
                              save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    # dropout off: with the same global batch, 1 and 2 processes then differ only by float summation order
    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    trainer = SelfTrainingTrainer(model=model, args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    trainer.train()
    metrics = trainer.evaluate()
    record = {"world_size": args.world_size, "pseudo_rows": trainer.pseudo_rows.tolist(),
              "pseudo_labels": trainer.pseudo_targets.argmax(1).tolist(), "eval_accuracy": metrics["eval_accuracy"],
              "round0_accuracy": trainer.rounds[0]["eval"]["eval_accuracy"],
              "train_loss": [r["train_loss"] for r in trainer.rounds], "steps": trainer.state.global_step,
              "unlabeled_batches": trainer.unlabeled_batches_consumed}
    with open(os.path.join(out, f"rank{args.process_index}.json"), "w") as handle:
        json.dump(record, handle)
    leave_together(trainer.accelerator)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
