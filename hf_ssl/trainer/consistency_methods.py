"""The five consistency methods, one function each: what the student is trained to match on the unlabeled rows.

Each function takes the step's `ConsistencyStep` (the labeled rows, the unlabeled rows' views, the detached
weak-view prediction and the threshold weights) and the config, runs the model and returns `ConsistencyLosses`.
`ConsistencyTrainer` looks the method up in `CONSISTENCY_METHODS` by ``ConsistencyConfig.method``; its defaults
(threshold, temperature, loss, EMA teacher) are `METHOD_DEFAULTS` in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from hf_ssl.data.collators import concat_inputs
from hf_ssl.methods.losses import consistency_loss, mixup, sharpen
from hf_ssl.trainer.consistency_config import ConsistencyConfig

__all__ = ["CONSISTENCY_METHODS", "ConsistencyLosses", "ConsistencyMethod", "ConsistencyStep",
           "fixmatch", "mean_teacher", "mixmatch", "pi_model", "uda"]


@dataclass
class ConsistencyStep:
    """What a method sees in one training step.

    Parameters:
        model (`Callable`): the model's forward (keyword model inputs -> outputs with ``logits``).
        embed (`Callable`): input ids -> input embeddings (MixMatch mixes text rows in embedding space).
        pad_token_id (`int`): padding of ``input_ids`` when batches of different widths are concatenated.
        labeled (`dict[str, torch.Tensor]`): model inputs of the labeled rows (weak view if ``augment_labeled``).
        labels (`torch.Tensor`): (n,) classes of the labeled rows.
        weak (`list[dict[str, torch.Tensor]]`): weak views of the m unlabeled rows (K views for MixMatch, else 1).
        strong (`dict[str, torch.Tensor]`): strong view of the unlabeled rows.
        probs (`torch.Tensor`): (m, C) detached mean prediction on the weak views (EMA teacher's if
            ``use_ema_teacher``, else the student's), distribution-aligned and graph-mixed when asked.
        weights (`torch.Tensor`): (m,) weight of each unlabeled row from the threshold strategy.
    """

    model: Callable[..., Any]
    embed: Callable[[torch.Tensor], torch.Tensor]
    pad_token_id: int
    labeled: dict[str, torch.Tensor]
    labels: torch.Tensor
    weak: list[dict[str, torch.Tensor]]
    strong: dict[str, torch.Tensor]
    probs: torch.Tensor
    weights: torch.Tensor


class ConsistencyLosses(NamedTuple):
    """A method's losses and model outputs for one step.

    Parameters:
        labeled (`torch.Tensor`): loss on the labeled rows.
        unlabeled (`torch.Tensor`): consistency loss on the unlabeled rows (weighted by the threshold weights).
        unlabeled_logits (`torch.Tensor`): the student's logits on the unlabeled rows (for ``entropy_weight``).
        outputs (`Any`): the model outputs, ``logits`` cut to the labeled rows.
    """

    labeled: torch.Tensor
    unlabeled: torch.Tensor
    unlabeled_logits: torch.Tensor
    outputs: Any


def match_on_strong_view(step: ConsistencyStep, targets: torch.Tensor, loss: str) -> ConsistencyLosses:
    """One forward pass over [labeled rows; strong view]: cross-entropy on the labeled rows, and ``loss`` of the
    strong view's logits against ``targets``, weighted per row by the threshold weights."""
    outputs = step.model(**concat_inputs([step.labeled, step.strong], step.pad_token_id))
    labeled_logits, strong_logits = outputs.logits.split([step.labels.shape[0], step.probs.shape[0]])
    labeled_loss = F.cross_entropy(labeled_logits.float(), step.labels)
    unlabeled_loss = consistency_loss(strong_logits, targets, loss, step.weights)
    outputs.logits = labeled_logits
    return ConsistencyLosses(labeled_loss, unlabeled_loss, strong_logits, outputs)


def fixmatch(step: ConsistencyStep, config: ConsistencyConfig) -> ConsistencyLosses:
    """FixMatch: the weak view's most likely class is a hard pseudo-label for the strong view (cross-entropy by
    default); the threshold keeps only confident rows."""
    hard = F.one_hot(step.probs.argmax(dim=-1), step.probs.shape[-1]).float()
    return match_on_strong_view(step, hard, config.consistency_loss)


def uda(step: ConsistencyStep, config: ConsistencyConfig) -> ConsistencyLosses:
    """UDA: the weak view's prediction, sharpened with ``temperature``, is a soft target for the strong view (KL
    divergence by default)."""
    return match_on_strong_view(step, sharpen(step.probs, config.temperature), config.consistency_loss)


def mean_teacher(step: ConsistencyStep, config: ConsistencyConfig) -> ConsistencyLosses:
    """Mean Teacher: the EMA teacher's prediction on the weak view is the student's target on the strong view (MSE
    by default)."""
    return match_on_strong_view(step, step.probs, config.consistency_loss)


def pi_model(step: ConsistencyStep, config: ConsistencyConfig) -> ConsistencyLosses:
    """Π-model: the student's own detached prediction on the weak view is its target on the strong view (MSE by
    default)."""
    return match_on_strong_view(step, step.probs, config.consistency_loss)


def mixmatch(step: ConsistencyStep, config: ConsistencyConfig) -> ConsistencyLosses:
    """MixMatch: the label guess is the mean prediction over the K weak views, sharpened with ``temperature``; the
    labeled rows (one-hot targets) and every weak view (the guess) are mixed up (pixels, or input embeddings for
    text) and the model is trained on the mixed rows: cross-entropy on the labeled part, ``consistency_loss`` (MSE
    by default) on the unlabeled part, whose row weights are mixed like the targets."""
    n_labeled, n_classes, n_views = step.labels.shape[0], step.probs.shape[-1], len(step.weak)
    guess = sharpen(step.probs, config.temperature)
    targets = torch.cat([F.one_hot(step.labels, n_classes).float(), guess.repeat(n_views, 1)])
    row_weights = torch.cat([torch.ones(n_labeled, device=step.probs.device), step.weights.repeat(n_views)])
    merged = concat_inputs([step.labeled, *step.weak], step.pad_token_id)
    if "pixel_values" in merged:
        key, values = "pixel_values", merged.pop("pixel_values")
    else:
        key, values = "inputs_embeds", step.embed(merged.pop("input_ids"))
    mixed, mixed_targets, _, perm = mixup(values, torch.cat([targets, row_weights[:, None]], dim=1),
                                          config.mixup_alpha)
    mixed_targets, mixed_weights = mixed_targets[:, :-1], mixed_targets[:, -1]
    if "attention_mask" in merged:  # a mixed row attends to the union of its two sources' tokens
        merged["attention_mask"] = torch.maximum(merged["attention_mask"], merged["attention_mask"][perm])
    outputs = step.model(**merged, **{key: mixed})
    logits = outputs.logits
    labeled_loss = consistency_loss(logits[:n_labeled], mixed_targets[:n_labeled], "ce")
    unlabeled_loss = consistency_loss(logits[n_labeled:], mixed_targets[n_labeled:], config.consistency_loss,
                                      mixed_weights[n_labeled:])
    outputs.logits = logits[:n_labeled]
    return ConsistencyLosses(labeled_loss, unlabeled_loss, logits[n_labeled:], outputs)


class ConsistencyMethod(NamedTuple):
    """A method's step function and what the model card says about it.

    Parameters:
        losses (`Callable`): ``(ConsistencyStep, ConsistencyConfig) -> ConsistencyLosses``.
        description (`str`): one sentence for the model card.
        paper (`dict[str, str]`): the paper's ``title`` and ``url``.
    """

    losses: Callable[[ConsistencyStep, ConsistencyConfig], ConsistencyLosses]
    description: str
    paper: dict[str, str]


CONSISTENCY_METHODS = {
    "fixmatch": ConsistencyMethod(
        fixmatch,
        "The weak view's prediction, when confident enough, is a hard pseudo-label for the strong view "
        "(cross-entropy).",
        {"title": "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence (Sohn et al., "
                  "NeurIPS 2020)", "url": "https://arxiv.org/abs/2001.07685"}),
    "uda": ConsistencyMethod(
        uda, "The weak view's sharpened prediction is a soft target for the strong view (KL divergence).",
        {"title": "Unsupervised Data Augmentation for Consistency Training (Xie et al., NeurIPS 2020)",
         "url": "https://arxiv.org/abs/1904.12848"}),
    "mean_teacher": ConsistencyMethod(
        mean_teacher,
        "An exponential moving average of the student predicts on the weak view; the student matches it on the "
        "strong view.",
        {"title": "Mean teachers are better role models (Tarvainen & Valpola, NeurIPS 2017)",
         "url": "https://arxiv.org/abs/1703.01780"}),
    "pi_model": ConsistencyMethod(
        pi_model, "The student's predictions on two augmented views of the same row are pulled together.",
        {"title": "Temporal Ensembling for Semi-Supervised Learning (Laine & Aila, ICLR 2017)",
         "url": "https://arxiv.org/abs/1610.02242"}),
    "mixmatch": ConsistencyMethod(
        mixmatch,
        "Labels are guessed by averaging and sharpening predictions over several weak views; labeled and unlabeled "
        "rows are mixed up and trained on the mixed targets.",
        {"title": "MixMatch: A Holistic Approach to Semi-Supervised Learning (Berthelot et al., NeurIPS 2019)",
         "url": "https://arxiv.org/abs/1905.02249"}),
}
