"""How good are the converted DINOv2-S's frozen features on Fashion-MNIST, layer by layer, against raw pixels?

The consistency benchmark's Fashion-MNIST setting (`bench.consistency_bench`: 56-px inputs, 4 labels per class
from a 6,000-image train subset shuffled by the seed, 1,500 unlabeled images, the same 5,000 test images) is
scored without any fine-tuning, for the CLS token and the token mean of every layer's output (``hidden_states``,
before the final norm), the model's normalised last hidden state, and the raw 28x28 pixels:

- ``label_spreading``: `LabelPropagator` (defaults: k = 10) over the labeled rows and the pool; accuracy on the
  pool (what a graph prior starts from);
- ``probe``: logistic regression (C = 10, unit-norm features) on the 40 labeled rows; test accuracy;
- ``pool_oracle_probe``: the same probe on the labeled rows plus the pool with its true labels; test accuracy.

A feature set named ``A+B`` (``--combine``) is the concatenation of A and B, each scaled to unit norm per row.
``--model`` scores another encoder folder (e.g. one adapted to the pool by `contrastive_adapt`) instead.

    python -m bench.fashion_features --seeds 0 1 2 --out bench/results/fashion_features.json
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel

from bench.common import PROBE_C, fashion_pools, fashion_test, make_parser, start_run, write_result
from hf_ssl import LabelPropagator, dinov2_path, load_fashion_mnist
from hf_ssl.data.images import image_array, to_pixel_values


def features(model: torch.nn.Module, images: np.ndarray, size: int, layers: list[int]) -> dict[str, np.ndarray]:
    """Frozen features of (N, 28, 28) uint8 images: ``L<i> cls`` / ``L<i> mean`` per layer, ``last cls`` and
    ``last mean`` (after the final norm) and ``pixels``."""
    out: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(images), 256):
            output = model(pixel_values=to_pixel_values(images[start:start + 256], size=size),
                           output_hidden_states=True)
            named = {f"L{i}": output.hidden_states[i] for i in layers}
            named["last"] = output.last_hidden_state
            for name, hidden in named.items():
                out.setdefault(f"{name} cls", []).append(hidden[:, 0].numpy())
                out.setdefault(f"{name} mean", []).append(hidden.mean(dim=1).numpy())
    result = {k: np.concatenate(v) for k, v in out.items()}
    result["pixels"] = images.reshape(len(images), -1).astype(np.float32)
    return result


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def combined(feats: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """``feats`` plus each ``A+B`` of ``names``: the row-wise unit-norm parts side by side."""
    return {**feats, **{name: np.hstack([unit(feats[part]) for part in name.split("+")]) for name in names}}


def score(labeled: np.ndarray, y_labeled: np.ndarray, pool: np.ndarray, y_pool: np.ndarray, test: np.ndarray,
          y_test: np.ndarray) -> dict[str, float]:
    """Label spreading on the pool, the 40-label probe and the pool-oracle probe, for one feature set."""
    X = np.concatenate([labeled, pool])
    spread = LabelPropagator().fit(X, np.concatenate([y_labeled, np.full(len(pool), -1)]))
    probe = LogisticRegression(C=PROBE_C, max_iter=3000).fit(unit(labeled), y_labeled)
    oracle = LogisticRegression(C=PROBE_C, max_iter=3000).fit(unit(X), np.concatenate([y_labeled, y_pool]))
    return {"label_spreading": float((spread.transduction_[len(labeled):] == y_pool).mean()),
            "probe": float(probe.score(unit(test), y_test)),
            "pool_oracle_probe": float(oracle.score(unit(test), y_test))}


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, seeds=[0, 1, 2])
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--labels_per_class", type=int, default=4)
    parser.add_argument("--max_unlabeled", type=int, default=1500)
    parser.add_argument("--train_subset", type=int, default=6000)
    parser.add_argument("--test_rows", type=int, default=5000)
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 6, 7, 8, 9, 10, 11, 12])
    parser.add_argument("--combine", nargs="*", default=[], help='feature sets to concatenate, e.g. "last cls+pixels"')
    parser.add_argument("--model", default=None, help="encoder folder to score (default: the converted DINOv2-S)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)
    model = AutoModel.from_pretrained(args.model or dinov2_path()).eval()
    raw = load_fashion_mnist()
    test = fashion_test(raw, args.test_rows)
    test_features = combined(features(model, image_array(test), args.image_size, args.layers), args.combine)
    y_test = np.array(test["label"])
    runs = []
    for seed in args.seeds:
        _, labeled, pool = fashion_pools(raw, seed, args.labels_per_class, args.max_unlabeled, args.train_subset)
        f_lab = combined(features(model, image_array(labeled), args.image_size, args.layers), args.combine)
        f_pool = combined(features(model, image_array(pool), args.image_size, args.layers), args.combine)
        y_lab, y_pool = np.array(labeled["label"]), np.array(pool["ssl_truth"])
        for name in f_lab:
            result = {"seed": seed, "features": name,
                      **score(f_lab[name], y_lab, f_pool[name], y_pool, test_features[name], y_test)}
            runs.append(result)
            print(json.dumps(result), flush=True)

    names = list(dict.fromkeys(r["features"] for r in runs))
    summary = {name: {metric: round(statistics.mean(r[metric] for r in runs if r["features"] == name), 4)
                      for metric in ("label_spreading", "probe", "pool_oracle_probe")} for name in names}
    print(f"\n{'features':12s} {'spreading':>10s} {'probe':>7s} {'oracle':>7s}   (means over seeds {args.seeds})")
    for name, row in summary.items():
        print(f"{name:12s} {row['label_spreading']:10.3f} {row['probe']:7.3f} {row['pool_oracle_probe']:7.3f}")
    if args.out:
        write_result(args.out, {"runs": runs, "summary": summary}, run)


if __name__ == "__main__":
    main()
