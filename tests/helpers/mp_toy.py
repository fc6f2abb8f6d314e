"""What the multi-process trainer scripts (``mp_*_script.py``) share: the toy pools, the common training
arguments, and training, evaluating and writing each rank's record.

Each script runs as ``script <tokenizer_dir> <out_dir> <per_device_batch>`` and writes ``out_dir/rank<i>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from transformers import BertTokenizerFast

from helpers.tiny import text_pool, tiny_bert
from hf_ssl import sample_per_class
from hf_ssl.data.metrics import classification_metrics
from hf_ssl.scripts.utils import leave_together

# The same settings on 1 and 2 processes; `per_device_train_batch_size` is the script's third argument.
COMMON_ARGS: dict[str, Any] = {"learning_rate": 1e-2, "report_to": "none", "save_strategy": "no", "use_cpu": True,
                               "seed": 0, "disable_tqdm": True}


def run(trainer_class: type, make_args: Callable[[str, int], Any], record: Callable[[Any, dict], dict]) -> None:
    """Build the toy pools (12 labeled + 109 unlabeled rows, 61 evaluation rows) and a dropout-free tiny BERT,
    train ``trainer_class`` with ``make_args(out, batch_size)``, evaluate, and write the common fields plus
    ``record(trainer, metrics)`` to this rank's JSON file."""
    tokenizer_dir, out, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 121), k=4, seed=0)
    evaluation = text_pool(tokenizer, 61, seed=1)
    args = make_args(out, batch_size)
    # dropout off: with the same global batch, 1 and 2 processes then differ only by float summation order
    # (and, for consistency training after its first step, by the strong views' random draws)
    model = tiny_bert(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    trainer = trainer_class(model=model, args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                            eval_dataset=evaluation, processing_class=tokenizer,
                            compute_metrics=classification_metrics)
    trainer.train()
    metrics = trainer.evaluate()
    fields = {"world_size": args.world_size, "eval_accuracy": metrics["eval_accuracy"],
              "steps": trainer.state.global_step, "unlabeled_batches": trainer.unlabeled_batches_consumed,
              "labeled": len(labeled), "unlabeled": len(unlabeled)}
    with open(os.path.join(out, f"rank{args.process_index}.json"), "w") as handle:
        json.dump(fields | record(trainer, metrics), handle)
    leave_together(trainer.accelerator)
