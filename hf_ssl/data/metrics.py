"""Classification metrics for `Trainer(compute_metrics=...)`, with no Hub access."""

from __future__ import annotations

import numpy as np
from transformers import EvalPrediction

__all__ = ["classification_metrics"]


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
