"""Frozen embeddings of a `datasets.Dataset` with a transformers encoder, for label propagation and selection.

`encode` turns every row of a dataset into one float32 vector: mean/CLS/pooler pooling for BERT-like text
encoders (or the base model of a ``*ForSequenceClassification``), CLS/pooler/mean for ViT-like image encoders
(``ViTModel``, ``Dinov2Model``, ...), pooler/mean for convolutional ones (EfficientNet-Lite, ResNet, ...), and the
projected features of either tower of a dual encoder (``CLIPModel``,
``VisionTextDualEncoderModel``). Text batches are sorted by token length and padded per batch; results are cached
on disk when ``cache_dir`` is given, and under ``accelerate launch`` each process encodes a contiguous shard.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from tqdm.auto import tqdm

from hf_ssl.graph.embedding_cache import cache_key, save_atomic
from hf_ssl.graph.pooling import is_dual_encoder, model_kind, pool, resolve_pooling, unwrap_peft

__all__ = ["encode", "is_dual_encoder"]

_TOWERS = ("image", "text")
_TOKENIZE_CHUNK = 1000  # rows tokenized per call


def _resolve_tower(kind: str, tower: str | None, columns: list[str], text_column: str, image_column: str) -> str | None:
    """The tower a dual encoder should run (from ``tower`` or from the dataset's columns); None for other models."""
    if kind != "dual":
        if tower is not None:
            raise ValueError("tower= only applies to dual encoders (CLIPModel, VisionTextDualEncoderModel)")
        return None
    if tower is not None:
        if tower not in _TOWERS:
            raise ValueError(f"tower must be one of {_TOWERS} or None, got {tower!r}")
        return tower
    has_image = image_column in columns
    has_text = text_column in columns or "input_ids" in columns
    if has_image == has_text:
        raise ValueError(f"Cannot infer the tower of this dual encoder from columns {columns}: pass tower='image' "
                         "or tower='text'")
    return "image" if has_image else "text"


def _pad_id(tokenizer: Any, model: Any) -> int:
    """Padding id from the tokenizer, else from the (text) config, else 0."""
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    if pad is None:
        config = getattr(model, "config", None)
        config = getattr(config, "text_config", None) or config
        pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _distributed_state(accelerator: Any) -> Any:
    """The Accelerator/PartialState to shard over, or None for a single process."""
    if accelerator is None:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        accelerator = PartialState()
    return accelerator if int(getattr(accelerator, "num_processes", 1)) > 1 else None


def _accepted_kwargs(fn: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop optional inputs (e.g. token_type_ids) that ``fn`` does not name in its signature."""
    try:
        names = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return batch
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask") or k in names}


def _tokenized_rows(data: Any, tokenizer: Any, text_column: str, max_length: int) -> tuple[list, list | None]:
    """Unpadded token ids (and token type ids) of every row, from ``input_ids`` or by tokenizing ``text_column``."""
    columns = data.column_names
    if "input_ids" in columns:
        cols = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in columns]
        raw = data.select_columns(cols).with_format(None)[:]
        ids, types = raw["input_ids"], raw.get("token_type_ids")
        if "attention_mask" in raw:  # drop padding stored in the dataset
            keep = [np.asarray(m, dtype=bool) for m in raw["attention_mask"]]
            ids = [np.asarray(r)[k] for r, k in zip(ids, keep, strict=True)]
            types = None if types is None else [np.asarray(r)[k] for r, k in zip(types, keep, strict=True)]
        return list(ids), None if types is None else list(types)
    if text_column not in columns:
        raise ValueError(f"Found neither an input_ids column nor the text column {text_column!r} in {columns}")
    if tokenizer is None:
        raise ValueError(f"Tokenizing column {text_column!r} needs processing_class= (a tokenizer or processor)")
    texts_ds = data.select_columns([text_column]).with_format(None)
    ids: list = []
    types: list | None = []
    for start in range(0, len(data), _TOKENIZE_CHUNK):
        texts = texts_ds[start:start + _TOKENIZE_CHUNK][text_column]
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        ids.extend(enc["input_ids"])
        if types is not None:
            if "token_type_ids" in enc:
                types.extend(enc["token_type_ids"])
            else:
                types = None
    return ids, types


def _text_batches(ids: list, types: list | None, batch_size: int, pad_id: int):
    """Yield (row positions, batch dict) over batches of rows sorted by decreasing length, padded per batch."""
    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(1, int(lengths[rows].max()))
        input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        type_ids = np.zeros((len(rows), width), dtype=np.int64) if types is not None else None
        for i, row in enumerate(rows):
            n = lengths[row]
            input_ids[i, :n] = ids[row]
            mask[i, :n] = 1
            if type_ids is not None:
                type_ids[i, :n] = types[row]
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if type_ids is not None:
            batch["token_type_ids"] = torch.from_numpy(type_ids)
        yield rows, batch


def _image_batches(data: Any, processing_class: Any, image_column: str, batch_size: int):
    """Yield (row positions, pixel_values) in dataset order, from a pixel_values column or images + a processor."""
    from datasets import Image

    if image_column not in data.column_names:
        raise ValueError(f"Image column {image_column!r} not found in {data.column_names}")
    is_image = isinstance(data.features[image_column], Image)
    if is_image and processing_class is None:
        raise ValueError(f"Column {image_column!r} holds images: pass an image processor as processing_class=")
    view = data.select_columns([image_column]).with_format(None if is_image else "numpy")
    processor = getattr(processing_class, "image_processor", processing_class)
    for start in range(0, len(data), batch_size):
        values = view[start:start + batch_size][image_column]
        if is_image:
            pixels = processor(images=[img.convert("RGB") for img in values], return_tensors="pt")["pixel_values"]
        else:
            pixels = torch.from_numpy(np.stack([np.asarray(v, dtype=np.float32) for v in values]))
        yield np.arange(start, start + len(values)), pixels


def _encode_rows(model: Any, data: Any, processing_class: Any, kind: str, tower: str | None, pooling: str,
                 normalize: bool, batch_size: int, text_column: str, image_column: str, max_length: int,
                 progress: Any, layer: int | None = None) -> np.ndarray | None:
    """Embeddings of every row of ``data`` in order, or None when ``data`` is empty."""
    if len(data) == 0:
        return None
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    modality = tower if kind == "dual" else ("image" if kind == "vision" else "text")
    base = getattr(model, "base_model", model)
    if modality == "text":
        tokenizer = getattr(processing_class, "tokenizer", processing_class)  # a processor's tokenizer, or None
        ids, types = _tokenized_rows(data, tokenizer, text_column, max_length)
        batches = _text_batches(ids, types, batch_size, _pad_id(tokenizer, model))
        call = model.get_text_features if kind == "dual" else base
        signature_of = model.get_text_features if kind == "dual" else base.forward
    else:
        batches = _image_batches(data, processing_class, image_column, batch_size)
        call = model.get_image_features if kind == "dual" else base
    extra = {} if layer is None else {"output_hidden_states": True}
    out = None
    for rows, batch in batches:
        if modality == "text":
            batch = {k: v.to(device) for k, v in _accepted_kwargs(signature_of, batch).items()}
            output = call(**batch, **extra)
            mask = batch["attention_mask"]
        else:
            output = call(pixel_values=batch.to(device=device, dtype=dtype), **extra)
            mask = None
        if layer is not None and not -len(output.hidden_states) <= layer < len(output.hidden_states):
            raise ValueError(f"layer={layer} is out of range: the model returns {len(output.hidden_states)} hidden "
                             f"states (the embeddings, then one per layer); use e.g. layer=-1 for the last one")
        pooled = pool(output, pooling, mask, layer).float()
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        if out is None:
            out = np.empty((len(data), pooled.shape[-1]), dtype=np.float32)
        out[rows] = pooled.cpu().numpy()
        if progress is not None:
            progress.update(len(rows))
    return out


def encode(model: Any, dataset: Any, processing_class: Any = None, *, pooling: str = "auto", normalize: bool = True,
           batch_size: int = 64, text_column: str = "text", image_column: str = "pixel_values",
           tower: str | None = None, max_length: int = 128, cache_dir: str | os.PathLike | None = None,
           accelerator: Any = None, show_progress: bool = True, layer: int | None = None) -> np.ndarray:
    """Encode every row of a dataset into one float32 vector, in the dataset's order.

    Text rows come from pre-tokenized ``input_ids`` (with optional ``attention_mask``/``token_type_ids``; used when
    present) or from ``text_column`` tokenized here with truncation at ``max_length``. Text batches are sorted by
    token length and padded per batch. Image rows come from ``image_column`` (pixel arrays, or images turned into
    pixels by an image processor). The model runs in eval mode under ``torch.inference_mode()`` on the device of
    its parameters; its training mode is restored afterwards.

    Parameters:
        model (`PreTrainedModel`):
            A text encoder (``BertModel``-like, or any ``*ForSequenceClassification``: its ``base_model`` is used),
            an image encoder (``ViTModel``, ``Dinov2Model``, ...), or a dual encoder (``CLIPModel``,
            ``VisionTextDualEncoderModel``) whose ``get_text_features``/``get_image_features`` are used. A peft
            ``PeftModel`` is unwrapped (its adapters stay active).
        dataset (`datasets.Dataset` or `list[str]`):
            The rows to encode; a list of strings becomes a ``text_column``.
        processing_class (tokenizer, processor or image processor, *optional*, defaults to `None`):
            Tokenizer (or processor holding one) for raw text; image processor for image columns.
        pooling (`str`, *optional*, defaults to `"auto"`):
            One of `"mean"` (over the attention mask), `"cls"` (first token), `"pooler"` (``pooler_output``) or
            `"auto"` (mean for text; cls for ViT-like image encoders and the pooled output for convolutional ones,
            whose (batch, channels, height, width) feature maps have no class token; projected features for dual
            encoders). `"mean"` averages a feature map over its positions; `"cls"` needs a token sequence.
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise each vector.
        batch_size (`int`, *optional*, defaults to `64`):
            Rows per forward pass.
        text_column (`str`, *optional*, defaults to `"text"`):
            Column of raw text.
        image_column (`str`, *optional*, defaults to `"pixel_values"`):
            Column of pixel values or images.
        tower (`str` or `None`, *optional*, defaults to `None`):
            `"image"` or `"text"` for dual encoders; `None` infers it from the columns when only one kind is
            present. Must be `None` for other models.
        max_length (`int`, *optional*, defaults to `128`):
            Truncation length when tokenizing ``text_column``.
        cache_dir (`str`, `os.PathLike` or `None`, *optional*, defaults to `None`):
            Folder for an on-disk cache keyed by model class, config, weights, settings, processing class and
            ``dataset._fingerprint``; a hit is loaded without running the model.
        accelerator (`accelerate.Accelerator`, `accelerate.PartialState` or `None`, *optional*, defaults to `None`):
            With several processes (also detected from ``WORLD_SIZE`` when `None`) each process encodes a
            contiguous shard and every process returns all rows.
        show_progress (`bool`, *optional*, defaults to `True`):
            Show a tqdm progress bar (main process only).
        layer (`int` or `None`, *optional*, defaults to `None`):
            Pool ``hidden_states[layer]`` (0 = the embeddings, 1..L the layers' outputs before any final norm;
            negative counts from the end) instead of the last hidden state; `"mean"`, `"cls"` and `"auto"` pooling
            only (a feature map is averaged over its positions), not dual encoders.

    Returns:
        `np.ndarray`: (len(dataset), dim) float32 array.
    """
    from datasets import Dataset

    if isinstance(dataset, (list, tuple)):
        dataset = Dataset.from_dict({text_column: list(dataset)})
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    model = unwrap_peft(model)
    kind = model_kind(model)
    tower = _resolve_tower(kind, tower, dataset.column_names, text_column, image_column)
    resolved = resolve_pooling(kind, pooling)
    if layer is not None:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layer must be an integer index into hidden_states or None, got {layer!r}")
        if resolved not in ("mean", "cls", "image"):
            raise ValueError(f"layer= needs pooling='mean', 'cls' or 'auto' (got {resolved!r}); dual encoders' "
                             f"projected features and poolers use the last layer only")
        layer = int(layer)
    state = _distributed_state(accelerator)
    n_proc, rank = (int(state.num_processes), int(state.process_index)) if state is not None else (1, 0)
    is_main = rank == 0

    path = None
    if cache_dir is not None:
        settings = {"pooling": resolved, "normalize": bool(normalize), "tower": tower, "max_length": int(max_length),
                    "text_column": text_column, "image_column": image_column, "layer": layer}
        path = Path(cache_dir) / f"embeddings-{cache_key(model, dataset, settings, processing_class)}.npy"
        hit = [path.exists()]
        if state is not None:  # every process follows the main process's view of the cache
            broadcast_object_list(hit)
        if hit[0]:
            cached = np.load(path)
            if cached.shape[0] == len(dataset):
                return cached

    bounds = np.linspace(0, len(dataset), n_proc + 1).round().astype(int) if n_proc > 1 else [0, len(dataset)]
    start, stop = int(bounds[rank]), int(bounds[rank + 1])
    shard = dataset if n_proc == 1 else dataset.select(range(start, stop))
    progress = tqdm(total=len(shard), desc="encode", unit="rows") if show_progress and is_main else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            part = _encode_rows(model, shard, processing_class, kind, tower, resolved, normalize, batch_size,
                                text_column, image_column, max_length, progress, layer)
    finally:
        model.train(was_training)
        if progress is not None:
            progress.close()

    if state is None:
        result = part
    else:
        parts = sorted(gather_object([(start, part)]), key=lambda item: item[0])
        result = np.concatenate([p for _, p in parts if p is not None], axis=0)
    if result.shape[0] != len(dataset):
        raise RuntimeError(f"encoded {result.shape[0]} rows for a dataset of {len(dataset)}")
    if path is not None:
        if is_main:
            save_atomic(path, result)
        if state is not None:
            state.wait_for_everyone()
    return result
