"""Checks of the model and the pools before training: a single-label classifier over the whole input, pools whose
labels, hidden truth and model inputs fit it (token ids, positions, token types, masks, images), no column named
like hf_ssl's own, and a one-row trial of image inputs (whose accepted sizes depend on the architecture)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers.models.auto import modeling_auto

from hf_ssl.data.collators import SSL_COLUMNS
from hf_ssl.data.input_checks import ModelLimits, check_model_inputs
from hf_ssl.data.validation import (
    LABEL_COLUMNS,
    check_eval_pool,
    check_labeled_pool,
    check_reserved_columns,
    check_truth_column,
    check_unlabeled_pool,
)

__all__ = ["base_model_of", "check_classifier", "model_limits", "try_image_row", "check_pools", "check_strong_views"]

_CLASSIFIER_MAPPINGS = (
    modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
    modeling_auto.MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES,
)


def _class_names(mapping: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for value in mapping.values():
        names |= {value} if isinstance(value, str) else set(value)
    return names


CLASSIFIERS = frozenset().union(*(_class_names(m) for m in _CLASSIFIER_MAPPINGS))


def base_model_of(model: Any) -> Any:
    """The model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "peft_config") else model


def check_classifier(model: Any) -> None:
    """Reject what hf_ssl trainers cannot train: a transformers model without a head classifying the whole input
    (a bare encoder, a token classifier, a language model...), a regression head and a multi-label problem.

    Parameters:
        model (`PreTrainedModel`): the model given to the trainer (PEFT-wrapped or not).
    """
    base = base_model_of(model)
    name = type(base).__name__
    if type(base).__module__.startswith("transformers.") and name not in CLASSIFIERS:
        raise ValueError(
            f"{name} is not a sequence or image classifier (no head classifying the whole input): not supported by "
            "hf_ssl trainers. Load the checkpoint with AutoModelForSequenceClassification (text) or "
            "AutoModelForImageClassification (images), with num_labels=<number of classes>."
        )
    config = getattr(base, "config", None)
    problem = getattr(config, "problem_type", None)
    if problem in ("regression", "multi_label_classification"):
        raise ValueError(
            f"problem_type={problem!r} is not supported (yet): hf_ssl trainers train single-label classifiers "
            "(softmax over num_labels classes, one class per row). Load the model with "
            "problem_type='single_label_classification' (or leave it unset)."
        )
    num_labels = getattr(config, "num_labels", None)
    if num_labels is not None and num_labels < 2:
        raise ValueError(
            f"num_labels={num_labels}: a regression head is not supported (yet); hf_ssl trainers train classifiers "
            "over >= 2 classes. Load the model with num_labels=<number of classes>."
        )


def _input_embeddings(model: Any) -> Any:
    """The token embedding module, or None for models without one (e.g. convolutional image models, whose
    ``get_input_embeddings`` raises NotImplementedError)."""
    try:
        return model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None


def model_limits(model: Any) -> ModelLimits:
    """Vocabulary, positions, token types and image channels of ``model``, read from its embedding modules (so
    resized embeddings count) or, failing that, from its config."""
    base = base_model_of(model)
    config = getattr(base, "config", None)
    words = _input_embeddings(base)
    embeddings = getattr(getattr(base, "base_model", base), "embeddings", None)
    positions = getattr(embeddings, "position_embeddings", None)
    max_length = None
    if isinstance(positions, torch.nn.Embedding):
        # RoBERTa-style embeddings number positions from padding_idx + 1.
        offset = positions.padding_idx + 1 if positions.padding_idx is not None else 0
        max_length = positions.num_embeddings - offset
    types = getattr(embeddings, "token_type_embeddings", None)
    vocab_size = words.num_embeddings if isinstance(words, torch.nn.Embedding) else getattr(config, "vocab_size", None)
    return ModelLimits(
        vocab_size=vocab_size,
        max_length=max_length,
        type_vocab_size=types.num_embeddings if isinstance(types, torch.nn.Embedding) else None,
        num_channels=getattr(config, "num_channels", None),
    )


def try_image_row(model: Any, batch: dict[str, torch.Tensor], name: str, num_labels: int) -> None:
    """Run ``model`` (in eval mode, without gradients) on a one-row batch of pixel values and check that it returns
    one logit per class; raise naming the pool and the image shape if it cannot.

    Parameters:
        model (`torch.nn.Module`): the model.
        batch (`dict[str, torch.Tensor]`): the collated first row of the pool, on the model's device.
        name (`str`): the pool's argument name, for messages.
        num_labels (`int`): the model's number of classes.
    """
    shape = tuple(batch["pixel_values"].shape[1:])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = getattr(model(**batch), "logits", None)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"the model cannot take the pixel_values of {name} (images of shape {shape}): {err} Preprocess the images "
            "with the model's image processor (it resizes them to the size the model was trained on)."
        ) from err
    finally:
        model.train(was_training)
    if logits is None or tuple(logits.shape) != (1, num_labels):
        raise ValueError(f"the model returned {None if logits is None else tuple(logits.shape)} logits for one row "
                         f"of {name}; hf_ssl trainers need (1, num_labels={num_labels}).")


def _check_pool_type(dataset: Any, name: str) -> None:
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name} must be a datasets.Dataset, got {type(dataset).__name__}.")


def check_pools(trainer: Any) -> np.ndarray | None:
    """Check the model, then every pool of ``trainer`` (an `SSLTrainer`) against it; return the labels of the labeled
    pool (None without one).

    Parameters:
        trainer (`SSLTrainer`): the trainer, with its model, pools, config and data collator set.
    """
    check_classifier(trainer.model)
    train, unlabeled, truth = trainer.train_dataset, trainer.unlabeled_dataset, trainer.args.truth_column
    if train is None:
        return None
    _check_pool_type(train, "train_dataset")
    trainer._set_signature_columns_if_needed()
    inputs = [c for c in trainer._signature_columns if c not in (*LABEL_COLUMNS, "label_ids", *SSL_COLUMNS)]
    if truth in inputs:
        model_name = type(base_model_of(trainer.model)).__name__
        raise ValueError(
            f"truth_column={truth!r} is a model input of {model_name}: hf_ssl hides the truth column from the model "
            "(it is for monitoring only). Set truth_column to the unlabeled pool's column of hidden true labels "
            "(default 'ssl_truth')."
        )
    limits = model_limits(trainer.model)
    pools = {"train_dataset": train}
    check_reserved_columns(train, "train_dataset")
    labels = check_labeled_pool(train, trainer.num_labels)
    if unlabeled is not None:
        _check_pool_type(unlabeled, "unlabeled_dataset")
        check_reserved_columns(unlabeled, "unlabeled_dataset")
        check_unlabeled_pool(unlabeled, trainer.model_input_columns(train))
        check_truth_column(unlabeled, truth, trainer.num_labels)
        pools["unlabeled_dataset"] = unlabeled
    evals = trainer.eval_dataset
    for key, dataset in (evals.items() if isinstance(evals, dict) else [(None, evals)]):
        if dataset is not None:
            name = "eval_dataset" if key is None else f"eval_dataset[{key!r}]"
            _check_pool_type(dataset, name)
            check_eval_pool(dataset, trainer.num_labels, name)
            pools[name] = dataset
    for name, dataset in pools.items():
        check_model_inputs(dataset, limits, name)
    for name, dataset in pools.items():
        if "pixel_values" in dataset.column_names and len(dataset):
            row = dataset.select_columns(trainer.model_input_columns(dataset))[0]
            try_image_row(trainer.model, trainer._prepare_inputs(trainer.data_collator([row])), name,
                          trainer.num_labels)
    return labels


def check_strong_views(unlabeled: Dataset, prefix: str, inputs: Sequence[str], limits: ModelLimits) -> None:
    """Check the precomputed strong views of the unlabeled pool: every column starting with ``prefix`` names a model
    input (``<prefix><input>``), the main input is among them, and they fit the model as the inputs do.

    Parameters:
        unlabeled (`datasets.Dataset`): the unlabeled pool.
        prefix (`str`): ``strong_view_prefix`` of the config (empty: no precomputed views).
        inputs (`Sequence[str]`): the model-input columns of the labeled pool.
        limits (`ModelLimits`): what the model takes.
    """
    strong = [c for c in unlabeled.column_names if prefix and c.startswith(prefix)]
    if not strong:
        return
    stray = [c for c in strong if c[len(prefix):] not in inputs]
    main = next((c for c in ("input_ids", "pixel_values") if c in inputs), None)
    if stray or (main is not None and f"{prefix}{main}" not in strong):
        raise ValueError(
            f"strong_view_prefix={prefix!r} marks column(s) {stray or strong} of unlabeled_dataset as precomputed "
            f"strong views, but those are columns '<prefix><model input>' (model inputs: {list(inputs)}) and must "
            f"include '{prefix}{main}'. Rename the columns, or set strong_view_prefix to a prefix that only they "
            "start with."
        )
    check_model_inputs(unlabeled, limits, "unlabeled_dataset", prefix=prefix)
