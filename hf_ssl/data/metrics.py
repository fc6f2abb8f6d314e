"""Classification metrics for `Trainer(compute_metrics=...)`, with no Hub access."""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import EvalPrediction

__all__ = ["check_compute_metrics", "classification_metrics"]


def classification_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy and macro-F1 from an `EvalPrediction` (logits and label ids)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(prediction.label_ids)
    f1s = []
    for cls in np.unique(np.concatenate([labels, predicted])):
        tp = np.sum((predicted == cls) & (labels == cls))
        denom = np.sum(predicted == cls) + np.sum(labels == cls)
        f1s.append(2 * tp / denom if denom else 0.0)
    return {"accuracy": float((predicted == labels).mean()), "macro_f1": float(np.mean(f1s))}


def check_compute_metrics(compute_metrics: Any) -> None:
    """Reject a ``compute_metrics`` that the Trainer could not call at its first evaluation (e.g. an `evaluate`
    module, whose ``compute`` takes predictions and references), naming the fix.

    Parameters:
        compute_metrics (callable or `None`): the ``compute_metrics=`` given to a trainer.
    """
    if compute_metrics is None or callable(compute_metrics):
        return
    hint = ""
    if callable(getattr(compute_metrics, "compute", None)):
        hint = (" An `evaluate` module is not one: wrap it, e.g. compute_metrics=lambda p: metric.compute("
                "predictions=p.predictions.argmax(-1), references=p.label_ids).")
    raise TypeError(
        f"compute_metrics must be a function of an EvalPrediction returning a dict, got a "
        f"{type(compute_metrics).__name__}.{hint} hf_ssl.data.metrics.classification_metrics gives accuracy and "
        "macro-F1 with no download.")
