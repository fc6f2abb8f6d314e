"""Run by tests/test_multiprocess.py under `accelerate launch`: a few Mean Teacher steps on a tiny random
EfficientNet-Lite (batch norm) that write each rank's teacher and student running statistics to <out>/rank<i>.json.

    python tests/helpers/mp_batchnorm_ema_script.py <out_dir>
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

from helpers.mp_toy import COMMON_ARGS  # noqa: E402
from helpers.tiny import pixel_pool, tiny_efficientnet_lite  # noqa: E402
from hf_ssl import ConsistencyConfig, ConsistencyTrainer, sample_per_class  # noqa: E402
from hf_ssl.scripts.utils import leave_together  # noqa: E402

if __name__ == "__main__":
    out = sys.argv[1]
    labeled, unlabeled = sample_per_class(pixel_pool(48), k=4, seed=0)
    args = ConsistencyConfig(output_dir=out, method="mean_teacher", ema_decay=0.5, max_steps=4, randaugment_n=1,
                             per_device_train_batch_size=2, **COMMON_ARGS)
    trainer = ConsistencyTrainer(model=tiny_efficientnet_lite(), args=args, train_dataset=labeled.with_format("torch"),
                                 unlabeled_dataset=unlabeled.with_format("torch"))
    trainer.train()
    student = dict(trainer.accelerator.unwrap_model(trainer.model).named_buffers())
    record = {"world_size": args.world_size, "updates": trainer.ema.num_updates,
              "teacher": {k: v.flatten().tolist() for k, v in trainer.ema.shadow_buffers.items()},
              "student": {k: student[k].flatten().tolist() for k in trainer.ema.shadow_buffers}}
    with open(os.path.join(out, f"rank{args.process_index}.json"), "w") as handle:
        json.dump(record, handle)
    leave_together(trainer.accelerator)
