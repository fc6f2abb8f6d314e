"""Arms on frozen embeddings of the pretrained encoder (MiniLM mean-pooled for text; for images the backbone's
`encode` pooling: DINOv2-S's CLS token, EfficientNet-Lite2's pooled feature map).

Every arm reads the embeddings of the run's training split and evaluation rows, computed once per dataset, split,
row selection and input size and cached as ``.npy`` files in the cache folder the runner passes (under the output
folder), so no arm encodes twice:

- ``linear_probe``: logistic regression (C = `bench.common.PROBE_C` unless ``settings.C``) on the labeled pool.
- ``label_propagator``: `hf_ssl.LabelPropagator` (its defaults, or ``settings``) fitted on the labeled and
  unlabeled pools; the evaluation rows are predicted inductively (`LabelPropagator.predict`), never part of the
  graph.
- ``selection``: `hf_ssl.select_for_labeling` (``settings.strategy``, default ``kmeans``; ``random`` for the
  baseline) picks as many rows as the labeled pool holds from the labeled and unlabeled pools together; a linear
  probe trained on the picks with their true labels is scored.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from transformers import EvalPrediction

from bench.common import PROBE_C
from bench.suite.data import Pools, encoder_path, model_inputs, tokenizer
from bench.suite.spec import RunSpec, safe_name
from hf_ssl import LabelPropagator, encode, select_for_labeling
from hf_ssl.data.metrics import classification_metrics
from hf_ssl.graph.embedding_cache import save_atomic


@functools.lru_cache(maxsize=2)
def encoder(path: Any) -> Any:
    """The pretrained encoder at ``path`` (without a classification head)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(path)


def embed(rows: Any, kind: str, data: dict[str, Any], path: Path) -> np.ndarray:
    """Normalised embeddings of ``rows``, loaded from ``path`` when it holds as many rows, else encoded and saved."""
    if path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(rows):
            return cached
    model = encoder(encoder_path(kind, data))
    if kind == "text":
        X = encode(model, rows, tokenizer(), pooling="mean", max_length=data["max_length"], show_progress=False)
    else:
        X = encode(model, model_inputs(rows, kind, data), show_progress=False)
    save_atomic(path, X)
    return X


def embeddings(spec: RunSpec, pools: Pools, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(training split, evaluation rows) embeddings of a run, through the cache folder."""
    data = spec.data
    size = f"len{data['max_length']}" if pools.modality == "text" else f"{data['backbone']}-px{data['image_size']}"
    drawn = f"rows{data['train_rows']}-seed{spec.seed}" if data["train_rows"] > 0 else "rowsall"
    stem = safe_name(f"{spec.dataset}-{spec.split}-val{data['validation_size']}-{size}")
    return (embed(pools.train, pools.modality, data, cache / f"{stem}-train-{drawn}.npy"),
            embed(pools.evaluation, pools.modality, data, cache / f"{stem}-eval-rows{data['eval_rows']}.npy"))


def scores(predicted: np.ndarray, truth: Any, num_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted class ids (`hf_ssl.data.metrics.classification_metrics`)."""
    logits = np.eye(num_labels)[np.asarray(predicted)]
    return classification_metrics(EvalPrediction(predictions=logits, label_ids=np.asarray(truth)))


def probe(X: np.ndarray, y: np.ndarray, X_eval: np.ndarray, C: float = PROBE_C) -> np.ndarray:
    """Predictions on ``X_eval`` of a logistic regression fitted on (X, y)."""
    return LogisticRegression(C=C, max_iter=2000).fit(X, y).predict(X_eval)


def run_linear_probe(spec: RunSpec, pools: Pools, cache: Path) -> dict[str, Any]:
    X, X_eval = embeddings(spec, pools, cache)
    rows = np.asarray(pools.labeled["row"])
    predicted = probe(X[rows], np.asarray(pools.labeled["label"]), X_eval, **spec.settings)
    return {**scores(predicted, pools.evaluation["label"], len(pools.names)), "labeled": len(rows)}


def run_label_propagator(spec: RunSpec, pools: Pools, cache: Path) -> dict[str, Any]:
    X, X_eval = embeddings(spec, pools, cache)
    labeled, unlabeled = np.asarray(pools.labeled["row"]), np.asarray(pools.unlabeled["row"])
    y = np.concatenate([np.asarray(pools.labeled["label"]), np.full(len(unlabeled), -1)])
    model = LabelPropagator(**spec.settings).fit(X[np.concatenate([labeled, unlabeled])], y)
    pool_accuracy = float((model.transduction_[len(labeled):] == np.asarray(pools.unlabeled["ssl_truth"])).mean())
    return {**scores(model.predict(X_eval), pools.evaluation["label"], len(pools.names)),
            "pool_accuracy": pool_accuracy, "converged": bool(model.converged_), "n_iter": int(model.n_iter_),
            "params": model.get_params(), "labeled": len(labeled), "unlabeled": len(unlabeled)}


def run_selection(spec: RunSpec, pools: Pools, cache: Path) -> dict[str, Any]:
    settings = {"strategy": "kmeans", **spec.settings}
    X, X_eval = embeddings(spec, pools, cache)
    candidates = np.concatenate([np.asarray(pools.labeled["row"]), np.asarray(pools.unlabeled["row"])])
    truth = np.asarray(pools.train["label"])
    budget = len(pools.labeled)
    picked = candidates[select_for_labeling(X[candidates], budget=budget, strategy=settings["strategy"],
                                            random_state=spec.seed)]
    predicted = probe(X[picked], truth[picked], X_eval, C=settings.get("C", PROBE_C))
    counts = np.bincount(truth[picked], minlength=len(pools.names))
    return {**scores(predicted, pools.evaluation["label"], len(pools.names)), "strategy": settings["strategy"],
            "budget": budget, "classes_covered": int((counts > 0).sum()), "class_counts": counts.tolist()}
