"""Initialise a classification head from a linear probe before fine-tuning (LP-FT).

A freshly initialised head makes the first epochs of fine-tuning on a few labels spend their updates on the
head while the gradients it sends back distort the pretrained features (Kumar et al., "Fine-Tuning can Distort
Pretrained Features and Underperform Out-of-Distribution", ICLR 2022). Fitting the head first as a logistic
regression on the frozen features it reads, then fine-tuning everything, starts training from the probe's
predictions, which semi-supervised methods also use on the unlabeled rows from the first step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["classifier_layer", "fit_linear_probe", "head_features", "init_head_from_probe"]


def classifier_layer(model: nn.Module, num_labels: int) -> nn.Linear:
    """The model's output layer: its last `nn.Linear` with ``num_labels`` outputs.

    Under PEFT the trainable copy of the head (``modules_to_save``) comes after the frozen original, so it is the
    one returned.

    Args:
        model: a classification model (plain or PEFT-wrapped).
        num_labels: number of classes.
    """
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise ValueError(
            f"head_init='linear_probe' needs a final nn.Linear layer with {num_labels} outputs (num_labels), and "
            f"{type(model).__name__} has none. Use head_init='random'."
        )
    return found[-1]


@torch.no_grad()
def head_features(model: nn.Module, layer: nn.Linear, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of ``layer`` and the labels, over every batch of ``loader``, with the model in eval mode.

    Args:
        model: the classification model.
        layer: its output layer (see `classifier_layer`).
        loader: batches of model inputs with a ``labels`` tensor.
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    labels = []
    device = next(model.parameters()).device
    try:
        for batch in loader:
            y = batch.pop("labels")
            model(**{k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)})
            labels.append(torch.as_tensor(y).reshape(-1).cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured), torch.cat(labels)


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_labels: int, c: float = 1.0,
                     max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, minimising sum cross-entropy + ||W||² / (2C) (scikit-learn's objective for
    ``LogisticRegression(C=c)``, intercept unpenalised), by L-BFGS in float64.

    Args:
        features: (n, d) inputs of the head.
        labels: (n,) class indices in [0, num_labels).
        num_labels: number of classes (classes without rows get weights from the penalty alone).
        c: inverse regularisation strength.
        max_iter: L-BFGS iterations.

    Returns:
        (weight (num_labels, d), bias (num_labels,)) in float32.
    """
    if c <= 0:
        raise ValueError(f"c must be > 0, got {c}.")
    x = features.double()
    y = labels.long()
    weight = torch.zeros(num_labels, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_labels, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y, reduction="sum") + weight.pow(2).sum() / (2 * c)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach().float(), bias.detach().float()


def init_head_from_probe(model: nn.Module, loader: DataLoader, num_labels: int, c: float = 1.0) -> dict[str, Any]:
    """Replace the output layer's weights by a logistic regression fitted on the features it reads.

    Args:
        model: the classification model.
        loader: labeled batches (model inputs and ``labels``).
        num_labels: number of classes.
        c: inverse regularisation strength of the probe.

    Returns:
        ``{"rows": n, "probe_train_accuracy": ...}`` for the logs.
    """
    layer = classifier_layer(model, num_labels)
    features, labels = head_features(model, layer, loader)
    if features.shape[1] != layer.in_features:
        raise ValueError(f"captured head inputs have {features.shape[1]} features, the layer takes "
                         f"{layer.in_features}; use head_init='random' for this model.")
    weight, bias = fit_linear_probe(features, labels, num_labels, c=c)
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.copy_(bias.to(layer.bias.dtype))
    logits = features @ weight.T + (bias if layer.bias is not None else 0.0)
    accuracy = float((logits.argmax(1) == labels).float().mean())
    return {"rows": int(len(labels)), "probe_train_accuracy": accuracy}
