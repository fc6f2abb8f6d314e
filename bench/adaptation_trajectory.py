"""Does longer SimCLR adaptation on a larger pool keep improving the DINOv2-S graph of Fashion-MNIST?

The consistency benchmark's Fashion-MNIST pools (56 px, 4 labels per class from a 6,000-image train subset shuffled
by the seed), here with the whole rest of the subset as the pool (5,960 images, 4x the benchmark's 1,500). SimCLR
(`nt_xent` on two `ImageAugmenter.strong` views, CLS token, throw-away 2-layer projection head, AdamW) runs for
``--steps`` steps; every ``--every`` steps label spreading (`LabelPropagator` defaults) over the labeled rows and the
pool is scored on the pool, from the model's output CLS (``cls``, what the graph prior uses) and layer 10's token
mean (``L10``). The output shows where the graph's accuracy, which the fine-tuned model's test accuracy tracks,
stops rising. The loop is written out here rather than calling `contrastive_adapt`, which has no mid-run hook: the
loss, views, pooling, optimizer and weight decay are the same; the projection head keeps PyTorch's default
initialisation and batches are drawn with replacement.

    python bench/adaptation_trajectory.py --seed 1 --lr 5e-5 --steps 1600 \
        --out bench/results/adaptation_trajectory_fashion_mnist.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from torch import nn
from transformers import AutoModel

from hf_ssl import LabelPropagator, dinov2_path, load_fashion_mnist, sample_per_class
from hf_ssl.contrastive import nt_xent
from hf_ssl.image_augment import ImageAugmenter
from hf_ssl.image_data import image_array, to_pixel_values


def graph_accuracy(model: nn.Module, images: np.ndarray, y: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Label-spreading accuracy on the pool (rows where ``y`` is -1) from the output CLS and layer 10's mean."""
    model.eval()
    feats: dict[str, list[np.ndarray]] = {"cls": [], "L10": []}
    with torch.inference_mode():
        for start in range(0, len(images), 256):
            out = model(pixel_values=to_pixel_values(images[start:start + 256], size=56), output_hidden_states=True)
            feats["cls"].append(out.last_hidden_state[:, 0].numpy())
            feats["L10"].append(out.hidden_states[10].mean(1).numpy())
    model.train()
    result = {}
    for name, parts in feats.items():
        spread = LabelPropagator().fit(np.concatenate(parts), y)
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
    hidden = model.config.hidden_size
    projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 128))
    optimizer = torch.optim.AdamW([*model.parameters(), *projection.parameters()], lr=args.lr, weight_decay=0.05)
    augmenter = ImageAugmenter()
    pool = to_pixel_values(image_array(unlabeled), size=56)
    generator = torch.Generator().manual_seed(args.seed)

    def embed(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return projection(model(**augmenter.strong(batch)).last_hidden_state[:, 0])

    trajectory = [{"step": 0, **graph_accuracy(model, images, y, truth)}]
    print(trajectory[-1], flush=True)
    model.train()
    start, running = time.time(), []
    for step in range(1, args.steps + 1):
        batch = {"pixel_values": pool[torch.randint(len(pool), (args.batch,), generator=generator)]}
        loss = nt_xent(embed(batch), embed(batch), args.temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.append(float(loss))
        if step % args.every == 0:
            trajectory.append({"step": step, "loss": sum(running) / len(running), "sec": round(time.time() - start),
                               **graph_accuracy(model, images, y, truth)})
            running = []
            print(trajectory[-1], flush=True)
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "torch_threads": torch.get_num_threads(),
                           "machine": platform.machine(), "trajectory": trajectory}, f, indent=1)


if __name__ == "__main__":
    main()
