"""Does longer SimCLR adaptation on a larger pool keep improving the DINOv2-S graph of Fashion-MNIST?

The consistency benchmark's Fashion-MNIST pools (56 px, 4 labels per class from a 6,000-image train subset shuffled
by the seed), here with the whole rest of the subset as the pool (5,960 images, 4x the benchmark's 1,500).
`contrastive_adapt` (SimCLR on two `ImageAugmenter.strong` views, batches of 64 drawn by a seeded shuffling
DataLoader, as in `consistency_bench.adapted_encoder`) runs for ``--steps`` steps; every ``--every`` steps its
``on_record`` hook scores label spreading (`LabelPropagator` defaults) over the labeled rows and the pool, on the
pool, from the model's output CLS (``cls``, what the graph prior uses) and layer 10's token mean (``L10``), both taken
by `fashion_features.features`. The output shows where the graph's accuracy, which the fine-tuned model's test
accuracy tracks, stops rising. The JSON is rewritten (atomically) at every record.

    python bench/adaptation_trajectory.py --seed 1 --lr 5e-5 --steps 1600 \
        --out bench/results/adaptation_trajectory_fashion_mnist.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from fashion_features import features
from transformers import AutoModel

from hf_ssl import LabelPropagator, dinov2_path, load_fashion_mnist, sample_per_class
from hf_ssl.augment.image import ImageAugmenter
from hf_ssl.data.images import image_array, to_pixel_values
from hf_ssl.methods.contrastive import contrastive_adapt
from hf_ssl.utils import write_text_atomic

SCORED = {"cls": "last cls", "L10": "L10 mean"}  # trajectory key: `features` key


def graph_accuracy(model: torch.nn.Module, images: np.ndarray, y: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Label-spreading accuracy on the pool (rows where ``y`` is -1) from the output CLS and layer 10's mean."""
    model.eval()
    feats = features(model, images, 56, [10])
    result = {}
    for name, key in SCORED.items():
        spread = LabelPropagator().fit(feats[key], y)
        result[name] = float((spread.transduction_[y == -1] == truth).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pool", type=int, default=5960)
    parser.add_argument("--subset", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    raw = load_fashion_mnist()
    train = raw["train"].shuffle(seed=args.seed).select(range(args.subset))
    labeled, unlabeled = sample_per_class(train, 4, seed=args.seed, max_unlabeled=args.pool)
    images = np.concatenate([image_array(labeled), image_array(unlabeled)])
    y = np.concatenate([np.asarray(labeled["label"]), np.full(len(unlabeled), -1)])
    truth = np.asarray(unlabeled["ssl_truth"])

    torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(dinov2_path())
    pool = to_pixel_values(image_array(unlabeled), size=56)
    loader = torch.utils.data.DataLoader([{"pixel_values": row} for row in pool], batch_size=args.batch,
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    trajectory = [{"step": 0, **graph_accuracy(model, images, y, truth)}]
    print(trajectory[-1], flush=True)
    start = time.time()

    def on_record(step: int, loss: float) -> None:
        trajectory.append({"step": step, "loss": loss, "sec": round(time.time() - start),
                           **graph_accuracy(model, images, y, truth)})
        print(trajectory[-1], flush=True)
        report = {"args": vars(args), "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                  "trajectory": trajectory}
        write_text_atomic(os.path.dirname(args.out) or ".", os.path.basename(args.out), json.dumps(report, indent=1))

    contrastive_adapt(model, loader, ImageAugmenter(), steps=args.steps, learning_rate=args.lr,
                      temperature=args.temperature, seed=args.seed, log_every=args.every, on_record=on_record)


if __name__ == "__main__":
    main()
