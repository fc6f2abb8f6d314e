"""Confidence thresholds for consistency regularization: fixed, FlexMatch, FreeMatch and SoftMatch.

The estimators are pure functions of a small state (tensors) and a batch of weak-view probabilities;
`ConfidenceMasker` keeps that state for a trainer, returns per-row weights in [0, 1], and saves and
restores the state with checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "THRESHOLD_STRATEGIES", "flexmatch_thresholds", "flexmatch_update", "freematch_update",
    "freematch_thresholds", "softmatch_update", "softmatch_weights", "ConfidenceMasker",
]

THRESHOLD_STRATEGIES = ("fixed", "flexmatch", "freematch", "softmatch")


def flexmatch_thresholds(row_class: torch.Tensor, num_classes: int, threshold: float,
                         warmup: bool = True) -> torch.Tensor:
    """FlexMatch's per-class thresholds T_c = M(β_c)·τ with M(x) = x / (2 - x).

    β_c is the class's learning effect: σ_c, the number of unlabeled rows last predicted as c with
    confidence above τ, normalised by the largest σ (or, during warm-up, by the number of rows not yet
    confidently predicted if that is larger). Classes that are learned well get thresholds near τ; classes
    that are hard get lower thresholds so that they still receive pseudo-labels.

    Args:
        row_class: (N,) last confident class of each unlabeled row, -1 if none yet.
        num_classes: C.
        threshold: the fixed ceiling τ.
        warmup: use the threshold warm-up (normalise by the unused rows while they dominate).
    """
    sigma = torch.bincount(row_class[row_class >= 0], minlength=num_classes)[:num_classes].float()
    denominator = sigma.max()
    if warmup:
        denominator = torch.maximum(denominator, (row_class < 0).sum().float())
    beta = sigma / denominator.clamp_min(1.0)
    return beta / (2.0 - beta) * threshold


def flexmatch_update(row_class: torch.Tensor, indices: torch.Tensor, probs: torch.Tensor,
                     threshold: float) -> torch.Tensor:
    """Record the predicted class of rows whose confidence exceeds τ (returns a new tensor).

    Args:
        row_class: (N,) current record, -1 for rows never confidently predicted.
        indices: (n,) rows of the unlabeled pool in this batch.
        probs: (n, C) their weak-view probabilities.
        threshold: τ.
    """
    confidence, predicted = probs.max(dim=-1)
    confident = confidence > threshold
    updated = row_class.clone()
    updated[indices[confident].to(row_class.device)] = predicted[confident].to(row_class.device)
    return updated


def freematch_update(global_threshold: torch.Tensor, class_prior: torch.Tensor, probs: torch.Tensor,
                     momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FreeMatch's EMA estimates: global τ_t of the mean top confidence, local p̃_t of the mean prediction.

    Args:
        global_threshold: scalar τ_{t-1} (starts at 1/C).
        class_prior: (C,) p̃_{t-1} (starts uniform).
        probs: (n, C) weak-view probabilities of this batch.
        momentum: EMA momentum m (e.g. 0.999).
    """
    new_global = momentum * global_threshold + (1 - momentum) * probs.max(dim=-1).values.mean()
    new_prior = momentum * class_prior + (1 - momentum) * probs.mean(dim=0)
    return new_global, new_prior


def freematch_thresholds(global_threshold: torch.Tensor, class_prior: torch.Tensor) -> torch.Tensor:
    """Self-adaptive class thresholds τ_t(c) = MaxNorm(p̃_t)(c) · τ_t.

    Args:
        global_threshold: scalar τ_t.
        class_prior: (C,) p̃_t.
    """
    return class_prior / class_prior.max().clamp_min(1e-12) * global_threshold


def softmatch_update(mean: torch.Tensor, var: torch.Tensor, probs: torch.Tensor,
                     momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SoftMatch's EMA of the mean and variance of the top confidence.

    Args:
        mean: scalar μ_{t-1} (starts at 1/C).
        var: scalar σ²_{t-1} (starts at 1).
        probs: (n, C) weak-view probabilities.
        momentum: EMA momentum m.
    """
    confidence = probs.max(dim=-1).values
    batch_var = confidence.var(unbiased=True) if confidence.numel() > 1 else torch.zeros_like(var)
    return momentum * mean + (1 - momentum) * confidence.mean(), momentum * var + (1 - momentum) * batch_var


def softmatch_weights(probs: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, n_sigma: float = 2.0) -> torch.Tensor:
    """Truncated Gaussian weights: 1 above the mean confidence μ, exp(-(p - μ)² / (2σ²/κ²)) below it.

    Args:
        probs: (n, C) probabilities.
        mean: scalar μ.
        var: scalar σ².
        n_sigma: κ, how many standard deviations the weight takes to fall to exp(-1/2).
    """
    gap = (probs.max(dim=-1).values - mean).clamp(max=0.0)
    return torch.exp(-gap.pow(2) / (2 * var.clamp_min(1e-12) / n_sigma**2))


class ConfidenceMasker:
    """Per-row loss weights from weak-view probabilities under one threshold strategy, with its state.

    Args:
        strategy: one of `THRESHOLD_STRATEGIES`.
        num_classes: C.
        num_rows: size of the unlabeled pool (FlexMatch tracks each row).
        threshold: τ (fixed threshold, FlexMatch's ceiling); unused by FreeMatch and SoftMatch.
        momentum: EMA momentum of FreeMatch and SoftMatch.
        flexmatch_warmup: FlexMatch's threshold warm-up.
        softmatch_n_sigma: SoftMatch's κ.
    """

    def __init__(self, strategy: str, num_classes: int, num_rows: int, threshold: float = 0.95,
                 momentum: float = 0.999, flexmatch_warmup: bool = True, softmatch_n_sigma: float = 2.0) -> None:
        if strategy not in THRESHOLD_STRATEGIES:
            raise ValueError(f"threshold_strategy must be one of {THRESHOLD_STRATEGIES}, got {strategy!r}")
        self.strategy, self.num_classes, self.threshold = strategy, num_classes, threshold
        self.momentum, self.flexmatch_warmup, self.n_sigma = momentum, flexmatch_warmup, softmatch_n_sigma
        uniform = 1.0 / num_classes
        self.state: dict[str, torch.Tensor] = {}
        if strategy == "flexmatch":
            self.state["row_class"] = torch.full((num_rows,), -1, dtype=torch.long)
        elif strategy == "freematch":
            self.state["global_threshold"] = torch.tensor(uniform)
            self.state["class_prior"] = torch.full((num_classes,), uniform)
        elif strategy == "softmatch":
            self.state["mean"] = torch.tensor(uniform)
            self.state["var"] = torch.tensor(1.0)

    def class_thresholds(self) -> torch.Tensor | None:
        """Current per-class thresholds (fixed, FlexMatch, FreeMatch), or None for SoftMatch."""
        s = self.state
        if self.strategy == "fixed":
            return torch.full((self.num_classes,), float(self.threshold))
        if self.strategy == "flexmatch":
            return flexmatch_thresholds(s["row_class"], self.num_classes, self.threshold, self.flexmatch_warmup)
        if self.strategy == "freematch":
            return freematch_thresholds(s["global_threshold"], s["class_prior"])
        return None

    def __call__(self, probs: torch.Tensor, indices: torch.Tensor | None = None,
                 update: bool = True) -> torch.Tensor:
        """Weights in [0, 1] for each row of ``probs``; then update the state with this batch.

        Args:
            probs: (n, C) weak-view probabilities (detached). Under several processes pass the gathered
                batch so that every process keeps the same state.
            indices: (n,) unlabeled-pool rows (FlexMatch only).
            update: update the running state after computing the weights.
        """
        probs = probs.detach().float().cpu()
        s = self.state
        if self.strategy == "softmatch":
            weights = softmatch_weights(probs, s["mean"], s["var"], self.n_sigma)
            if update:
                s["mean"], s["var"] = softmatch_update(s["mean"], s["var"], probs, self.momentum)
            return weights
        if self.strategy == "freematch" and update:
            # FreeMatch updates its estimates before masking the batch.
            s["global_threshold"], s["class_prior"] = freematch_update(
                s["global_threshold"], s["class_prior"], probs, self.momentum)
        confidence, predicted = probs.max(dim=-1)
        weights = (confidence >= self.class_thresholds()[predicted]).float()
        if self.strategy == "flexmatch" and update:
            if indices is None:
                raise ValueError("FlexMatch needs the unlabeled row indices of the batch")
            s["row_class"] = flexmatch_update(s["row_class"], indices.cpu(), probs, self.threshold)
        return weights

    def state_dict(self) -> dict[str, Any]:
        """The strategy and its tensors (for checkpoints)."""
        return {"strategy": self.strategy, **{k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; refuses another strategy's state."""
        if state.get("strategy") != self.strategy:
            raise ValueError(
                f"the checkpoint holds {state.get('strategy')!r} threshold state but threshold_strategy is "
                f"{self.strategy!r}; resume with the same threshold_strategy."
            )
        for key in self.state:
            if state[key].shape != self.state[key].shape:
                raise ValueError(f"threshold state {key!r} has shape {tuple(state[key].shape)} in the checkpoint, "
                                 f"expected {tuple(self.state[key].shape)}: was the unlabeled pool changed?")
            self.state[key] = state[key].clone()
