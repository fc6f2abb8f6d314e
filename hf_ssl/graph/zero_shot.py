"""Zero-shot class probabilities from a dual encoder (CLIP-style): class-name prompts through the text tower.

Each class name is written into one or more prompt templates ("a photo of a {}."), the prompts are embedded by
the text tower and L2-normalised, averaged over the templates and normalised again (prompt ensembling, as in
CLIP), and every image embedding is compared to these class vectors by cosine similarity, scaled by the model's
learned ``logit_scale.exp()`` (or ``1 / temperature``) and turned into probabilities with a softmax. The result
can initialise the label distributions of `LabelPropagator.fit(X, y, prior=...)`. With a single template the
probabilities equal ``softmax(logits_per_image)`` of a ``CLIPModel``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_ssl.graph.embeddings import encode
from hf_ssl.graph.knn import normalised_rows
from hf_ssl.graph.pooling import is_dual_encoder
from hf_ssl.utils import as_numpy, as_real_matrix

__all__ = ["zero_shot_probabilities", "class_text_embeddings"]

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def _check_dual_encoder(model: Any) -> None:
    if not is_dual_encoder(model):
        raise ValueError(f"model must be a dual encoder with get_text_features and get_image_features (CLIPModel, "
                         f"VisionTextDualEncoderModel), got {type(model).__name__}")


def _check_prompts(class_names: Sequence[str], templates: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """Validated (class names, templates) as lists; a single template string becomes a one-element list."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names must be a sequence of strings, got {type(class_names).__name__}")
    names = list(class_names)
    if not names:
        raise ValueError("class_names is empty")
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError("class_names must hold non-empty strings")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"class_names has duplicates: {duplicates}")
    if isinstance(templates, str):
        templates = [templates]
    if isinstance(templates, Sequence):
        templates = list(templates)
    if not isinstance(templates, list) or not templates:
        raise ValueError("templates must be a non-empty sequence of strings containing '{}'")
    for template in templates:
        if not isinstance(template, str) or "{}" not in template:
            raise ValueError(f"templates must be strings containing '{{}}' for the class name, got {template!r}")
    return names, templates


def _projection_width(model: Any) -> int | None:
    """Width of the text features (the text projection's output), when the model exposes it."""
    width = getattr(getattr(model, "text_projection", None), "out_features", None)
    if width is None:
        width = getattr(getattr(model, "config", None), "projection_dim", None)
    return int(width) if width is not None else None


def _logit_scale(model: Any, temperature: float | None) -> float:
    """``1 / temperature`` when given, else the model's ``logit_scale.exp()``."""
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite number or None, got {temperature!r}")
        return 1.0 / float(temperature)
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        raise ValueError(f"{type(model).__name__} has no logit_scale: pass temperature=")
    return float(np.exp(float(as_numpy(scale).reshape(()))))


def class_text_embeddings(model: Any, processing_class: Any, class_names: Sequence[str],
                          templates: str | Sequence[str] = DEFAULT_TEMPLATES, *, batch_size: int = 64,
                          max_length: int = 77) -> np.ndarray:
    """One unit vector per class: the normalised mean of its normalised prompt embeddings (text tower).

    Args:
        model: a dual encoder (``CLIPModel``, ``VisionTextDualEncoderModel``).
        processing_class: its tokenizer, or a processor holding one.
        class_names: the C class names, in label order.
        templates: prompt templates, each with ``{}`` where the class name goes.
        batch_size: prompts per forward pass.
        max_length: truncation length of the prompts (77 is CLIP's text context).

    Returns:
        (C, d) float64 array with unit-norm rows.
    """
    _check_dual_encoder(model)
    names, templates = _check_prompts(class_names, templates)
    if processing_class is None:
        raise ValueError("processing_class must be the model's tokenizer (or a processor holding one), got None")
    prompts = [template.replace("{}", name) for name in names for template in templates]
    text = encode(model, prompts, processing_class, tower="text", normalize=True, batch_size=batch_size,
                  max_length=max_length, show_progress=False).astype(np.float64)
    return normalised_rows(text.reshape(len(names), len(templates), -1).mean(axis=1), dtype=np.float64)


def zero_shot_probabilities(model: Any, processing_class: Any, class_names: Sequence[str], image_embeddings: Any,
                            templates: str | Sequence[str] = DEFAULT_TEMPLATES, temperature: float | None = None, *,
                            batch_size: int = 64, max_length: int = 77) -> np.ndarray:
    """Zero-shot class probabilities of images from class-name prompts (CLIP-style prompt ensembling).

    Equals ``softmax(logits_per_image)`` of the model for a single template; with several templates each class
    vector is the renormalised mean of its templates' normalised text features.

    Args:
        model: a dual encoder (``CLIPModel``, ``VisionTextDualEncoderModel``) with ``get_text_features`` and
            ``get_image_features``.
        processing_class: its tokenizer, or a processor holding one (used for the prompts only).
        class_names: the C class names in label order (e.g. a ``ClassLabel``'s ``names``); distinct.
        image_embeddings: (n, d) image features of the same model, e.g. ``encode(model, images,
            tower="image")``; normalised here, so raw ``get_image_features`` outputs work too. numpy or torch.
        templates: prompt templates, each with ``{}`` where the class name goes; one string is one template.
        temperature: softmax temperature; None uses the model's learned ``logit_scale.exp()`` (1/temperature).
        batch_size: prompts per forward pass.
        max_length: truncation length of the prompts.

    Returns:
        (n, C) float64 array of probabilities (rows sum to 1).

    Raises:
        ValueError: before any model call, for a model that is not a dual encoder, empty or duplicate
            ``class_names``, a template without ``{}``, a non-positive ``temperature``, or ``image_embeddings``
            that are not a finite 2-D array as wide as the text features.
    """
    _check_dual_encoder(model)
    _check_prompts(class_names, templates)
    scale = _logit_scale(model, temperature)
    images = as_real_matrix(image_embeddings, "image_embeddings")
    width = _projection_width(model)
    if width is not None and images.shape[1] != width:
        raise ValueError(f"image_embeddings have width {images.shape[1]} but the model's text features have {width}")
    text = class_text_embeddings(model, processing_class, class_names, templates, batch_size=batch_size,
                                 max_length=max_length)
    if images.shape[1] != text.shape[1]:
        raise ValueError(f"image_embeddings have width {images.shape[1]} but the text features have {text.shape[1]}")
    logits = scale * (normalised_rows(images, dtype=np.float64) @ text.T)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities
