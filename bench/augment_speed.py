"""Speed of the batched `ImageAugmenter` views against the same views computed one image at a time in a Python
loop (`per_image`), on one random batch of normalised (n, 3, size, size) images: the strong view (`strong_tensor` on
the batch against `strong_tensor` per image) and the weak view (`weak_tensor` likewise). One warm-up call each, then
the median of --repeats timed calls (alternating the order); the target is per-sample/batched >= 5 for the strong
view.

    python -m bench.augment_speed --n 64 --size 56 --out bench/results/augment_speed.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import kornia
import torch

from bench.common import make_parser, start_run, write_result
from hf_ssl.augment.image import ImageAugmenter
from hf_ssl.data.images import IMAGENET_MEAN, IMAGENET_STD

AUGMENTER_FIELDS = ("flip", "crop_padding", "randaugment_n", "randaugment_m", "cutout")


def time_calls(fns: dict[str, Callable[[], torch.Tensor]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function: one warm-up call each, then ``repeats`` rounds in alternating order.

    Args:
        fns: the functions to time, by name.
        repeats: timed calls per function.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for rep in range(repeats):
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def per_image(view: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """``view`` applied to each image of the batch on its own (a batch of one), in a Python loop."""
    return torch.cat([view(images[i:i + 1]) for i in range(len(images))])


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out="bench/results/augment_speed.json", seed=0, threads=True)
    parser.add_argument("--n", type=int, default=64, help="images per batch")
    parser.add_argument("--size", type=int, default=56, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def measure_views(n: int, size: int, seed: int = 0, repeats: int = 5) -> dict[str, Any]:
    """Time the batched and per-image strong and weak views of a default `ImageAugmenter` on ``n`` random
    normalised images of ``size`` pixels (`time_calls`).

    Returns:
        ``augmenter`` (its settings), ``seconds`` (every call), ``median_seconds``, ``images_per_second`` and
        ``ratio_per_sample_over_batched`` per view.
    """
    torch.manual_seed(seed)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    images = (torch.rand(n, 3, size, size) - mean) / std
    augmenter = ImageAugmenter()
    fns = {
        "strong_batched": lambda: augmenter.strong_tensor(images),
        "strong_per_sample": lambda: per_image(augmenter.strong_tensor, images),
        "weak_batched": lambda: augmenter.weak_tensor(images),
        "weak_per_sample": lambda: per_image(augmenter.weak_tensor, images),
    }
    times = time_calls(fns, repeats)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"augmenter": {name: getattr(augmenter, name) for name in AUGMENTER_FIELDS}, "seconds": times,
            "median_seconds": median, "images_per_second": {name: n / t for name, t in median.items()},
            "ratio_per_sample_over_batched": {view: median[f"{view}_per_sample"] / median[f"{view}_batched"]
                                              for view in ("strong", "weak")}}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)

    load_before = os.getloadavg()[0]
    views = measure_views(args.n, args.size, args.seed, args.repeats)
    median, ratios = views["median_seconds"], views["ratio_per_sample_over_batched"]
    report = {
        "augmenter": views["augmenter"],
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        **{key: views[key] for key in ("seconds", "median_seconds", "images_per_second")},
        "ratio_per_sample_over_batched": ratios, "target_strong_ratio_ge_5": ratios["strong"] >= 5,
    }
    print(f"batch {args.n} x 3 x {args.size} x {args.size}, torch threads {torch.get_num_threads()}, "
          f"kornia {kornia.__version__}, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    for name in median:
        print(f"{name:<18} median {1000 * median[name]:8.2f} ms  {args.n / median[name]:9.1f} images/s")
    for view, ratio in ratios.items():
        print(f"{view} per-sample/batched: {ratio:.1f}x")
    print(f"strong target >= 5x: {'met' if ratios['strong'] >= 5 else 'MISSED'}")
    write_result(args.out, report, run)


if __name__ == "__main__":
    main()
