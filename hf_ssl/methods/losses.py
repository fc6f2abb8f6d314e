"""Loss functions on logits, as pure functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "sharpen", "mix_graph_prior", "consistency_loss",
           "entropy_loss", "align_distribution", "mixup"]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against probability targets, optionally weighted per row.

    Args:
        logits: (n, C) logits.
        targets: (n, C) target distributions (rows sum to 1).
        weights: optional (n,) non-negative row weights.

    Returns:
        Scalar: sum_i w_i · H(targets_i, softmax(logits_i)) / n.
    """
    per_row = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    if weights is not None:
        per_row = per_row * weights
    return per_row.mean()


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sharpen distributions: p^(1/T) renormalised (T < 1 sharpens, T = 1 is the identity, T > 1 softens).

    Probabilities are clamped to at least 1e-12. Rows whose powers all underflow (a small T) are computed as
    ``softmax(log(p) / T)`` instead. `hf_ssl.methods.pseudo_labels.soft_targets` is this function on numpy arrays.

    Args:
        probs: (n, C) probabilities.
        temperature: T > 0.
    """
    probs = probs.clamp_min(1e-12)
    powered = probs.pow(1.0 / temperature)
    total = powered.sum(dim=-1, keepdim=True)
    underflow = total < torch.finfo(total.dtype).tiny
    if underflow.any():
        return torch.where(underflow, torch.softmax(probs.log() / temperature, dim=-1), powered / total)
    return powered / total


def mix_graph_prior(probs: torch.Tensor, graph_labels: torch.Tensor, weight: float) -> torch.Tensor:
    """Mix the classes that label spreading gave the rows into their predicted distributions:
    (1 − w)·p + w·onehot(graph label). Rows without a graph label (-1) keep p.

    With w = 0.5 and a confidence threshold τ > 0.5, a row passes only where the model agrees with the graph (its
    mixed confidence is 0.5 + 0.5·p) or where the model itself is near certain of another class.

    Args:
        probs: (n, C) predicted probabilities.
        graph_labels: (n,) class per row from label spreading, -1 for none.
        weight: w in [0, 1].
    """
    has = graph_labels >= 0
    prior = F.one_hot(graph_labels.clamp_min(0), probs.shape[-1]).to(probs.dtype)
    mixed = (1.0 - weight) * probs + weight * prior
    return torch.where(has[:, None], mixed, probs)


def consistency_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str = "ce",
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """Consistency between a student's logits and (detached) target distributions, mean over rows.

    Args:
        logits: (n, C) student logits (strong view).
        targets: (n, C) target distributions (one-hot for hard pseudo-labels).
        kind: ``"ce"`` cross-entropy, ``"kl"`` KL(target || student), ``"mse"`` squared error of probabilities
            (mean over classes).
        weights: optional (n,) row weights or confidence mask.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    targets = targets.float()
    if kind == "ce":
        per_row = -(targets * log_probs).sum(dim=-1)
    elif kind == "kl":
        per_row = (targets * (targets.clamp_min(1e-12).log() - log_probs)).sum(dim=-1)
    elif kind == "mse":
        per_row = (log_probs.exp() - targets).pow(2).mean(dim=-1)
    else:
        raise ValueError(f"consistency loss kind must be 'ce', 'kl' or 'mse', got {kind!r}")
    if weights is not None:
        per_row = per_row * weights
    return per_row.mean()


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy (entropy minimisation pushes decision boundaries to low-density regions).

    Args:
        logits: (n, C) logits.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1).mean()


def align_distribution(probs: torch.Tensor, model_prior: torch.Tensor, target_prior: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (ReMixMatch): scale by target / model class prior and renormalise.

    Args:
        probs: (n, C) predicted probabilities.
        model_prior: (C,) running mean of the model's predictions on unlabeled data.
        target_prior: (C,) desired class distribution (labeled prior or uniform).
    """
    aligned = probs * (target_prior / model_prior.clamp_min(1e-6))
    return aligned / aligned.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """MixMatch's mixup: mix each row with a random other row, weight λ' = max(λ, 1 - λ), λ ~ Beta(α, α).

    Args:
        inputs: (n, ...) float inputs (pixels or input embeddings).
        targets: (n, C) target distributions.
        alpha: Beta parameter (> 0).
        generator: optional RNG for the permutation (λ comes from torch's Beta with the global RNG).

    Returns:
        (mixed inputs, mixed targets, λ', the permutation each row was mixed with).
    """
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    mixed = lam * inputs + (1 - lam) * inputs[perm]
    return mixed, lam * targets + (1 - lam) * targets[perm], lam, perm
