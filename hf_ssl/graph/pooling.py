"""What kind of encoder a transformers model is, and how its output becomes one vector per row."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["POOLINGS", "is_dual_encoder", "model_kind", "pool", "resolve_pooling", "unwrap_peft"]

POOLINGS = ("auto", "mean", "cls", "pooler")


def unwrap_peft(model: Any) -> Any:
    """The transformers model inside a peft ``PeftModel`` (its adapter layers are injected there and stay active),
    or ``model`` itself. A PeftModel's own ``base_model`` is the adapter wrapper around the whole model (head
    included), not the encoder."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) and hasattr(model, "peft_config") else model


def is_dual_encoder(model: Any) -> bool:
    """Whether ``model`` has both a text and an image tower (``get_text_features`` and ``get_image_features``), as
    ``CLIPModel`` and ``VisionTextDualEncoderModel`` do."""
    return callable(getattr(model, "get_text_features", None)) and callable(getattr(model, "get_image_features", None))


def model_kind(model: Any) -> str:
    """"dual" (CLIP-like: text and image feature methods), "text" or "vision" (by the base model's main input)."""
    if is_dual_encoder(model):
        return "dual"
    base = getattr(model, "base_model", model)
    main_input = getattr(base, "main_input_name", getattr(model, "main_input_name", "input_ids"))
    if main_input == "pixel_values":
        return "vision"
    if main_input == "input_ids":
        return "text"
    raise ValueError(f"Unsupported model {type(model).__name__}: main input {main_input!r} is neither input_ids nor "
                     "pixel_values")


def resolve_pooling(kind: str, pooling: str) -> str:
    """The pooling `pool` applies for a model of ``kind`` (see `model_kind`): "auto" becomes "mean" for text and
    "image" for vision encoders (the first token of a ViT-like token sequence, the pooled output of a convolutional
    feature map); dual encoders always use their "projection"."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if kind == "dual":
        if pooling not in ("auto", "pooler"):
            raise ValueError("Dual encoders return their projected features: use pooling='auto' (or 'pooler')")
        return "projection"
    if pooling == "auto":
        return "mean" if kind == "text" else "image"
    return pooling


def pool(output: Any, pooling: str, mask: torch.Tensor | None, layer: int | None = None) -> torch.Tensor:
    """Pool a model output: "projection" (``get_*_features``: a tensor in older transformers, else its
    pooler_output), "mean" over the mask (all tokens if None; all positions of a (batch, channels, height, width)
    feature map), "cls" (token 0), "pooler" or "image" (see `resolve_pooling`); "mean", "cls" and "image" read
    ``hidden_states[layer]`` when a layer is given, else ``last_hidden_state``."""
    if pooling == "projection":
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    pooled = getattr(output, "pooler_output", None)
    if pooling == "pooler":
        if pooled is None:
            raise ValueError("pooling='pooler' needs a model with a pooler (pooler_output is None)")
        return pooled.flatten(1)  # convolutional poolers may keep (batch, channels, 1, 1)
    hidden = output.last_hidden_state if layer is None else output.hidden_states[layer]
    if hidden.ndim == 4:  # a convolutional feature map: no tokens
        if pooling == "cls":
            raise ValueError("pooling='cls' needs a token sequence, but this model returns a (batch, channels, "
                             "height, width) feature map with no class token: use pooling='auto', 'pooler' or 'mean'")
        if pooling == "image" and layer is None and pooled is not None:
            return pooled.flatten(1)
        return hidden.mean(dim=(2, 3))
    if pooling in ("cls", "image"):
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
