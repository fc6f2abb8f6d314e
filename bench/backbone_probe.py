"""Which image backbone: frozen DINOv2-S vs EfficientNet-Lite2 features on Fashion-MNIST, against raw pixels.

A subset of Fashion-MNIST's train split (``--subset`` images, shuffled by ``--split_seed``) is cut in two halves:
labeled images are drawn per class from the first half for each seed, the second half is the validation set (the
test split is never read). Every backbone embeds the subset once per input side (``encode``'s default pooling:
DINOv2's CLS token, EfficientNet-Lite's pooled feature map); a logistic regression (C = 10, unit-norm features)
is fitted on the labeled rows and scored on the validation half. Encoding speed is recorded as images per second.

    python -m bench.backbone_probe --threads 2 --out bench/results/backbone_probe_fashion_mnist.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel

from bench.common import PROBE_C, make_parser, start_run, write_result
from hf_ssl import encode, load_fashion_mnist
from hf_ssl.assets.backbones import IMAGE_BACKBONES
from hf_ssl.data.images import image_array, pixel_settings


def probe(features: np.ndarray, labels: np.ndarray, train: np.ndarray, val: np.ndarray) -> float:
    """Validation accuracy of a logistic regression on unit-norm ``features[train]``."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    clf = LogisticRegression(C=PROBE_C, max_iter=2000).fit(unit[train], labels[train])
    return float(clf.score(unit[val], labels[val]))


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out="bench/results/backbone_probe_fashion_mnist.json", seeds=[0, 1, 2],
                         threads=True)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--labels_per_class", type=int, nargs="+", default=[4, 25])
    parser.add_argument("--dinov2_sizes", type=int, nargs="+", default=[56, 112])
    parser.add_argument("--lite_sizes", type=int, nargs="+", default=[64, 112, 224])
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)
    data = load_fashion_mnist()["train"].shuffle(seed=args.split_seed).select(range(args.subset))
    labels = np.asarray(data["label"])
    half = args.subset // 2
    val = np.arange(half, args.subset)
    draws = {}
    for k in args.labels_per_class:
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            draws[(k, seed)] = np.concatenate([rng.choice(np.flatnonzero(labels[:half] == c), k, replace=False)
                                               for c in range(10)])
    feature_sets = {"pixels": (image_array(data).reshape(len(data), -1).astype(np.float32), None)}
    for name, path in IMAGE_BACKBONES.items():
        model = AutoModel.from_pretrained(path()).eval()
        settings = pixel_settings(path())
        for size in args.dinov2_sizes if settings.patch_size else args.lite_sizes:
            pixels = settings.pixels(data, size=size)
            start = time.perf_counter()
            feats = encode(model, pixels, normalize=False, batch_size=64, show_progress=False)
            feature_sets[f"{name} {size}px"] = (feats, round(len(data) / (time.perf_counter() - start), 1))
    results = {}
    for name, (feats, speed) in feature_sets.items():
        row = {"images_per_second": speed, "dim": int(feats.shape[1])}
        for k in args.labels_per_class:
            scores = [probe(feats, labels, draws[(k, seed)], val) for seed in args.seeds]
            row[f"probe_{k}_per_class"] = {"mean": round(statistics.mean(scores), 4),
                                           "per_seed": [round(s, 4) for s in scores]}
        results[name] = row
        print(name, row, flush=True)
    print(write_result(args.out, {"validation_rows": len(val), "torch_threads": torch.get_num_threads(),
                                  "results": results}, run))


if __name__ == "__main__":
    main()
