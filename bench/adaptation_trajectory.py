"""Label-spreading accuracy of the DINOv2-S graph of Fashion-MNIST along one long SimCLR adaptation of the encoder.

The consistency benchmark's Fashion-MNIST pools (56 px, 4 labels per class from a ``--subset``-image train subset
shuffled by the seed), with ``--pool`` unlabeled images. SimCLR runs for ``--steps`` steps: `nt_xent` (temperature
``--temperature``) between the projections of two `ImageAugmenter.strong` views of each batch (the output CLS
through a two-layer projection head to 128 dimensions), AdamW at a constant ``--lr`` with weight decay 0.05, batches
of ``--batch`` images drawn by a seeded shuffling DataLoader. Before the first step and every ``--every`` steps, label
spreading (`LabelPropagator` defaults) over the labeled rows and the pool is scored on the pool, from the model's
output CLS (``cls``, what the graph prior uses) and layer 10's token mean (``L10``), both taken by
`bench.fashion_features.features`; the JSON is rewritten (atomically) at every record.

The loop is this script's own, so that one run can be scored part-way; it trains as `contrastive_adapt` does (same
loss, projection head shape, optimizer and defaults), except that the projection head starts from torch's default
`nn.Linear` initialisation and the random stream differs, so the weights after N steps are not those of
``contrastive_adapt(steps=N)``.

    python -m bench.adaptation_trajectory --seed 1 --lr 5e-5 --steps 1600 \
        --out bench/results/adaptation_trajectory_fashion_mnist.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoModel

from bench.common import fashion_pools, make_parser, start_run, write_result
from bench.fashion_features import features
from hf_ssl import LabelPropagator, dinov2_path, load_fashion_mnist
from hf_ssl.augment.image import ImageAugmenter
from hf_ssl.data.images import image_array, to_pixel_values
from hf_ssl.methods.contrastive import nt_xent

SCORED = {"cls": "last cls", "L10": "L10 mean"}  # trajectory key: `features` key


def graph_accuracy(model: nn.Module, images: np.ndarray, y: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Label-spreading accuracy on the pool (rows where ``y`` is -1) from the output CLS and layer 10's mean."""
    model.eval()
    feats = features(model, images, 56, [10])
    result = {}
    for name, key in SCORED.items():
        spread = LabelPropagator().fit(feats[key], y)
        result[name] = float((spread.transduction_[y == -1] == truth).mean())
    return result


def cycle(batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The batches again and again (a shuffling DataLoader reshuffles on every pass)."""
    while True:
        yield from batches


def simclr_steps(model: nn.Module, projection: nn.Module, optimizer: torch.optim.Optimizer,
                 batches: Iterator[dict[str, Any]], augmenter: ImageAugmenter, steps: int, temperature: float) -> float:
    """Train ``model`` and ``projection`` for ``steps`` SimCLR steps; return the mean loss over them."""
    def embed(inputs: dict[str, Any]) -> torch.Tensor:
        return projection(model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0])

    model.train()
    losses = []
    for _ in range(steps):
        batch = next(batches)
        loss = nt_xent(embed(augmenter.strong(batch)), embed(augmenter.strong(batch)), temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out_required=True, seed=1)
    parser.add_argument("--pool", type=int, default=5960)
    parser.add_argument("--subset", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.2)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.every < 1:
        raise SystemExit(f"--steps and --every must be positive, got {args.steps} and {args.every}")
    run = start_run(args, __file__, argv)
    _, labeled, unlabeled = fashion_pools(load_fashion_mnist(), args.seed, 4, args.pool, args.subset)
    images = np.concatenate([image_array(labeled), image_array(unlabeled)])
    y = np.concatenate([np.asarray(labeled["label"]), np.full(len(unlabeled), -1)])
    truth = np.asarray(unlabeled["ssl_truth"])

    torch.manual_seed(args.seed)
    model = AutoModel.from_pretrained(dinov2_path())
    hidden = model.config.hidden_size
    projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 128))
    optimizer = torch.optim.AdamW([*model.parameters(), *projection.parameters()], lr=args.lr, weight_decay=0.05)
    pool = to_pixel_values(image_array(unlabeled), size=56)
    loader = torch.utils.data.DataLoader([{"pixel_values": row} for row in pool], batch_size=args.batch,
                                         shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        raise SystemExit(f"--pool ({len(pool)} images) must hold at least one batch of --batch {args.batch}")
    batches, augmenter = cycle(loader), ImageAugmenter()
    trajectory = [{"step": 0, **graph_accuracy(model, images, y, truth)}]
    print(trajectory[-1], flush=True)
    start, step = time.time(), 0
    while step < args.steps:
        chunk = min(args.every, args.steps - step)
        loss = simclr_steps(model, projection, optimizer, batches, augmenter, chunk, args.temperature)
        step += chunk
        trajectory.append({"step": step, "loss": loss, "sec": round(time.time() - start),
                           **graph_accuracy(model, images, y, truth)})
        print(trajectory[-1], flush=True)
        write_result(args.out, {"trajectory": trajectory}, run)


if __name__ == "__main__":
    main()
