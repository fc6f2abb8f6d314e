"""Contrastive adaptation of a pretrained encoder to the unlabeled pool (SimCLR), before semi-supervised fine-tuning.

When the pretrained features separate the task's classes poorly, pseudo-labels and graphs built on them start
weak. A few hundred SimCLR steps on two strong views of the unlabeled rows pull each row's views together
and push other rows away, which makes the pool cluster by class before any label is used, in the spirit of
SimCLRv2's "self-supervised pretraining, then fine-tuning, then distillation" (Chen et al., NeurIPS 2020,
https://arxiv.org/abs/2006.10029). `ConsistencyConfig(contrastive_steps=N)` runs it at the start of training.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_ssl.graph.pooling import model_kind, pool, resolve_pooling, unwrap_peft

__all__ = ["nt_xent", "contrastive_adapt"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy: each row of ``z1`` must pick its partner in ``z2`` (and vice
    versa) among the 2n − 1 other projections of the batch.

    Args:
        z1: (n, d) projections of the first views.
        z2: (n, d) projections of the second views, row i paired with ``z1[i]``.
        temperature: softmax temperature of the cosine similarities.

    Returns:
        The mean loss over the 2n rows (a scalar).
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must both be (n >= 2, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partners = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partners)


def _encoder(model: nn.Module) -> tuple[nn.Module, str]:
    """The body to adapt (``base_model`` of a classifier, PEFT unwrapped) and its pooling."""
    model = unwrap_peft(model)
    kind = model_kind(model)
    if kind == "dual":
        raise ValueError("contrastive adaptation needs a single-tower text or image encoder, not a dual encoder")
    return getattr(model, "base_model", model), resolve_pooling(kind, "auto")


def contrastive_adapt(model: nn.Module, batches: Any, augmenter: Any, *, steps: int, learning_rate: float = 2e-5,
                      temperature: float = 0.2, weight_decay: float = 0.05, projection_dim: int = 128,
                      seed: int = 0, log_every: int = 50) -> dict[str, Any]:
    """Train ``model``'s encoder in place with SimCLR on two strong views of unlabeled batches.

    A two-layer projection head is trained alongside and thrown away; the classification head is untouched. The
    model's training mode is restored afterwards.

    Args:
        model: a ``*ForSequenceClassification`` / ``*ForImageClassification`` model or a bare encoder (PEFT models
            are unwrapped; only their trainable parameters move).
        batches: an iterable of model-input dicts (``pixel_values``, or ``input_ids`` + ``attention_mask``) of at
            least 2 rows, cycled until ``steps`` optimizer steps are done.
        augmenter: object with ``strong(inputs) -> inputs`` (`ImageAugmenter`, `TextAugmenter`); each step draws
            two independent strong views of the batch.
        steps: optimizer steps (> 0).
        learning_rate: AdamW learning rate (constant).
        temperature: `nt_xent` temperature.
        weight_decay: AdamW weight decay.
        projection_dim: output size of the projection head.
        seed: seeds the projection head's initialisation.
        log_every: record the mean loss every this many steps.

    Returns:
        ``{"steps", "seconds", "losses": [(step, mean loss since the last record), ...]}``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    encoder, pooling = _encoder(model)
    param = next(encoder.parameters())
    hidden = int(encoder.config.hidden_size)
    generator = torch.Generator().manual_seed(seed)
    projection = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, projection_dim))
    with torch.no_grad():
        for layer in projection:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / hidden ** 0.5)
                layer.bias.zero_()
    projection.to(device=param.device, dtype=param.dtype)
    trainable = [p for p in encoder.parameters() if p.requires_grad] + list(projection.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=weight_decay)

    def embed(inputs: dict[str, Any]) -> torch.Tensor:
        inputs = {k: v.to(param.device) for k, v in inputs.items()}
        output = encoder(**inputs)
        return projection(pool(output, pooling, inputs.get("attention_mask")))

    was_training = model.training
    encoder.train()
    start, step, running, losses = time.perf_counter(), 0, [], []
    try:
        while step < steps:
            seen = 0
            for batch in batches:
                seen += 1
                loss = nt_xent(embed(augmenter.strong(batch)), embed(augmenter.strong(batch)), temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                running.append(float(loss.detach()))
                if step % log_every == 0 or step == steps:
                    losses.append((step, sum(running) / len(running)))
                    running = []
                if step == steps:
                    break
            if seen == 0:
                raise ValueError("contrastive_adapt got no batches (pass a non-empty re-iterable, e.g. a DataLoader, "
                                 "not a used-up generator)")
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1), "losses": losses}
