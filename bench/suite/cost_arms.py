"""The ``cost`` arm: one timed comparison of an hf_ssl path against its plain counterpart, in one run.

``settings.measure`` picks it (settings and defaults: `bench.suite.cost_settings.MEASURES`):

- ``ssl_step``: `ConsistencyTrainer.training_step` over a raw forward+backward of the same tensors
  (`bench.consistency_step.measure`), MiniLM on R8 or DINOv2-S on random pixels; ratio SSL / raw (overhead).
- ``encode``: naive fixed-padding loop over `hf_ssl.encode` (`bench.encode_throughput.compare`); ratio
  naive / encode (speed-up).
- ``label_propagator_synthetic``: scikit-learn ``LabelSpreading(kernel="knn")`` over `hf_ssl.LabelPropagator` with
  the same ``n_neighbors`` on clustered vectors (`bench.labelprop_scale`); ratio sklearn / LabelPropagator, with
  both transductive accuracies on the unlabeled rows under ``accuracies``.
- ``label_propagator_fashion``: the same on Fashion-MNIST's train and test images together (70,000 rows, or
  ``rows`` of them after a shuffle by the seed) as flattened pixels scaled to [0, 1], reduced by a PCA fitted on
  those pixels (no labels); ``labels_per_class`` rows per class drawn by `hf_ssl.sample_per_class` at the seed are
  labeled, the rest unlabeled.
- ``augment``: the per-image loop over the batched strong view of `ImageAugmenter`
  (`bench.augment_speed.measure_views`); ratio per-image / batched.

Every result records ``ratio`` with ``ratio_of`` (which timing over which), ``statistic`` (``median`` or ``best``
of the repeats) and the timing of each side under ``seconds`` (every repeat under ``all_seconds``), ``threads``
(torch threads during the measurement), ``threadpools`` (the BLAS/OpenMP pools numpy and scikit-learn use),
``load_before`` and ``load_after`` (1/5/15-minute load averages) and ``wall_seconds`` of the whole measure.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import augment_speed, consistency_step, encode_throughput, labelprop_scale
from bench.common import first_rows
from bench.suite.cost_settings import COMMON, MEASURES
from bench.suite.spec import RunSpec


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch threads (None: as they are), restoring the count after; yields the
    count in force."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def threadpools() -> list[dict[str, Any]]:
    """The native thread pools loaded in the process (threadpoolctl): library, API and thread count."""
    from threadpoolctl import threadpool_info

    return [{key: pool.get(key) for key in ("internal_api", "prefix", "num_threads")} for pool in threadpool_info()]


def comparison(
    numerator: str, denominator: str, seconds: dict[str, list[float]], statistic: str, **extra: Any
) -> dict[str, Any]:
    """The ratio of two timed sides: ``statistic`` (``median`` or ``best``) of each side's repeats, then
    numerator over denominator; every side of ``seconds`` is summarised, ``extra`` is added as it is."""
    pick: Callable[[list[float]], float] = min if statistic == "best" else statistics.median
    summary = {name: pick(values) for name, values in seconds.items()}
    return {
        "ratio": summary[numerator] / summary[denominator],
        "ratio_of": f"{numerator} / {denominator}",
        "statistic": statistic,
        "seconds": summary,
        "all_seconds": seconds,
        **extra,
    }


def measure_ssl_step(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model, tokenizer, labeled, unlabeled = consistency_step.pools(
        settings["model"], settings["n_unlabeled"], settings["max_length"], settings["image_size"]
    )
    step = consistency_step.measure(
        model,
        tokenizer,
        labeled,
        unlabeled,
        settings["augment_in"],
        settings["workers"],
        **{k: settings[k] for k in consistency_step.STEP_SETTINGS},
    )
    return comparison(
        "ssl_step",
        "raw_step",
        {"ssl_step": step["ssl_seconds"], "raw_step": step["raw_seconds"]},
        "median",
        model=settings["model"],
    )


def measure_encode(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    model, tokenizer, data = encode_throughput.load_inputs(settings["n"])
    result = encode_throughput.compare(
        model, tokenizer, data, settings["batch_size"], settings["max_length"], settings["repeats"]
    )
    return comparison(
        "naive",
        "encode",
        result["seconds"],
        "best",
        rows=len(data),
        token_lengths=result["token_lengths"],
        agreement=result["agreement"],
    )


def propagation_comparison(
    X: np.ndarray, y: np.ndarray, truth: np.ndarray, n_neighbors: int, repeats: int
) -> dict[str, Any]:
    """scikit-learn ``LabelSpreading(kernel="knn")`` and `LabelPropagator` with the same ``n_neighbors``, fitted
    ``repeats`` times each in alternating order (`bench.labelprop_scale.run_sklearn` and ``run_propagator``);
    accuracy on the unlabeled rows (``y < 0``)."""
    runs: dict[str, list[dict[str, Any]]] = {"sklearn": [], "label_propagator": []}
    fits = {
        "sklearn": lambda: labelprop_scale.run_sklearn(X, y, truth, n_neighbors),
        "label_propagator": lambda: labelprop_scale.run_propagator(X, y, truth, None, n_neighbors=n_neighbors),
    }
    for rep in range(repeats):
        for name in list(fits) if rep % 2 == 0 else list(fits)[::-1]:
            runs[name].append(fits[name]())
            print(f"  {name}: {runs[name][-1]['seconds']:.2f} s, accuracy {runs[name][-1]['accuracy']:.4f}", flush=True)
    last = {name: {k: v for k, v in done[-1].items() if k != "seconds"} for name, done in runs.items()}
    return comparison(
        "sklearn",
        "label_propagator",
        {name: [r["seconds"] for r in done] for name, done in runs.items()},
        "best",
        accuracies={name: run["accuracy"] for name, run in last.items()},
        runs=last,
        rows=len(y),
        labeled=int((y >= 0).sum()),
        n_neighbors=n_neighbors,
    )


def measure_synthetic(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    X, truth = labelprop_scale.make_data(
        settings["n"],
        settings["dim"],
        settings["classes"],
        settings["modes"],
        settings["spread"],
        settings["noise"],
        seed,
    )
    y = labelprop_scale.label_subset(truth, settings["label_fraction"], seed)
    return {**propagation_comparison(X, y, truth, settings["n_neighbors"], settings["repeats"]), "dim": settings["dim"]}


def fashion_features(rows: int, pca_dim: int, labels_per_class: int, seed: int) -> dict[str, Any]:
    """Fashion-MNIST train + test (``rows`` of them after a shuffle by ``seed``; all when negative) as PCA
    features of the pixels, with ``y`` (-1 on unlabeled rows) and the true labels."""
    from datasets import concatenate_datasets
    from sklearn.decomposition import PCA

    from hf_ssl import load_fashion_mnist, sample_per_class
    from hf_ssl.data.images import image_array

    raw = load_fashion_mnist()
    data = first_rows(concatenate_datasets([raw["train"], raw["test"]]), rows, seed)
    data = data.add_column("row", list(range(len(data))))
    labeled, _ = sample_per_class(data, labels_per_class, seed=seed)
    pixels = image_array(data).reshape(len(data), -1).astype(np.float32) / 255.0
    start = time.perf_counter()
    X = PCA(n_components=pca_dim, random_state=seed).fit_transform(pixels).astype(np.float32)
    pca_seconds = time.perf_counter() - start
    truth = np.asarray(data["label"])
    y = np.full(len(data), -1, dtype=np.int64)
    y[np.asarray(labeled["row"])] = truth[np.asarray(labeled["row"])]
    return {"X": X, "y": y, "truth": truth, "pca_seconds": pca_seconds}


def measure_fashion(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    features = fashion_features(settings["rows"], settings["pca_dim"], settings["labels_per_class"], seed)
    result = propagation_comparison(
        features["X"], features["y"], features["truth"], settings["n_neighbors"], settings["repeats"]
    )
    return {
        **result,
        "pca_dim": settings["pca_dim"],
        "pca_seconds": features["pca_seconds"],
        "labels_per_class": settings["labels_per_class"],
    }


def measure_augment(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    views = augment_speed.measure_views(settings["n"], settings["size"], seed, settings["repeats"])
    return comparison(
        "strong_per_sample",
        "strong_batched",
        views["seconds"],
        "median",
        weak_ratio=views["ratio_per_sample_over_batched"]["weak"],
        augmenter=views["augmenter"],
        images=settings["n"],
        size=settings["size"],
    )


MEASURE_FUNCTIONS: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    "ssl_step": measure_ssl_step,
    "encode": measure_encode,
    "label_propagator_synthetic": measure_synthetic,
    "label_propagator_fashion": measure_fashion,
    "augment": measure_augment,
}


def run_cost(spec: RunSpec, pools: Any, cache: Path) -> dict[str, Any]:
    """Run the spec's measure with its thread setting; ``pools`` and ``cache`` are unused (no data pools)."""
    measure = spec.settings["measure"]
    settings = {**COMMON, **MEASURES[measure], **spec.settings}
    with torch_threads(settings["threads"]) as threads:
        load_before = [round(v, 2) for v in os.getloadavg()]
        start = time.perf_counter()
        result = MEASURE_FUNCTIONS[measure](settings, spec.seed)
        wall = time.perf_counter() - start
        return {
            "measure": measure,
            **result,
            "threads": threads,
            "threadpools": threadpools(),
            "load_before": load_before,
            "load_after": [round(v, 2) for v in os.getloadavg()],
            "wall_seconds": round(wall, 2),
        }
