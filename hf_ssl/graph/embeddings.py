"""Frozen embeddings of a `datasets.Dataset` with a transformers encoder, for label propagation and selection.

`encode` turns every row of a dataset into one float32 vector: mean/CLS/pooler pooling for BERT-like text
encoders (or the base model of a ``*ForSequenceClassification``), CLS/pooler/mean for ViT-like image encoders
(``ViTModel``, ``Dinov2Model``, ...), and the projected features of either tower of a dual encoder (``CLIPModel``,
``VisionTextDualEncoderModel``). Text batches are sorted by token length and padded per batch; results are cached
on disk when ``cache_dir`` is given, and under ``accelerate launch`` each process encodes a contiguous shard.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from tqdm.auto import tqdm

__all__ = ["encode"]

_POOLINGS = ("auto", "mean", "cls", "pooler")
_TOWERS = ("image", "text")
_TOKENIZE_CHUNK = 1000  # rows tokenized per call
_WEIGHT_SAMPLE = 1024  # elements hashed per parameter tensor for the weight fingerprint
_SUM_CHUNK = 1 << 20  # elements per chunk when summing a tensor for the weight fingerprint


def _unwrap_peft(model: Any) -> Any:
    """The transformers model inside a peft ``PeftModel`` (its adapter layers are injected there and stay active),
    or ``model`` itself. A PeftModel's own ``base_model`` is the adapter wrapper around the whole model (head
    included), not the encoder."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) and hasattr(model, "peft_config") else model


def is_dual_encoder(model: Any) -> bool:
    """Whether ``model`` has both a text and an image tower (``get_text_features`` and ``get_image_features``), as
    ``CLIPModel`` and ``VisionTextDualEncoderModel`` do."""
    return callable(getattr(model, "get_text_features", None)) and callable(getattr(model, "get_image_features", None))


def _model_kind(model: Any) -> str:
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


def _resolve_pooling(kind: str, pooling: str) -> str:
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
    if kind == "dual":
        if pooling not in ("auto", "pooler"):
            raise ValueError("Dual encoders return their projected features: use pooling='auto' (or 'pooler')")
        return "projection"
    if pooling == "auto":
        return "mean" if kind == "text" else "cls"
    return pooling


def _pad_id(tokenizer: Any, model: Any) -> int:
    """Padding id from the tokenizer, else from the (text) config, else 0."""
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    if pad is None:
        config = getattr(model, "config", None)
        config = getattr(config, "text_config", None) or config
        pad = getattr(config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _weights_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every parameter's and buffer's name, shape and dtype, a strided sample of its values and the exact
    float64 sum of all its values (numpy sums in fixed chunks, so the result does not depend on thread counts)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // _WEIGHT_SAMPLE)
            total = sum(float(flat[i:i + _SUM_CHUNK].to("cpu", torch.float64).numpy().sum())
                        for i in range(0, flat.numel(), _SUM_CHUNK))
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}:{total.hex()}".encode())
            digest.update(flat[::step][:_WEIGHT_SAMPLE].to("cpu", torch.float64).numpy().tobytes())
    return digest.hexdigest()


def _processing_fingerprint(processing_class: Any) -> str | None:
    """Hash of a tokenizer's full definition (fast tokenizers) or vocabulary, or of an image processor's settings."""
    if processing_class is None:
        return None
    tokenizer = getattr(processing_class, "tokenizer", processing_class)  # a processor's tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        definition = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # set by each call, not part of the tokenizer's identity
            definition.pop(transient, None)
        text = json.dumps(definition, sort_keys=True)
    elif hasattr(tokenizer, "get_vocab"):
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    elif hasattr(processing_class, "to_json_string"):
        text = processing_class.to_json_string()
    else:
        text = repr(processing_class)
    extra = f"{type(processing_class).__qualname__}:{getattr(tokenizer, 'pad_token_id', None)}"
    return hashlib.sha256((extra + text).encode()).hexdigest()


def _cache_key(model: Any, dataset: Any, settings: dict[str, Any], processing_class: Any) -> str:
    """Key of the cached array: model class, config, weights, settings, processing class and dataset fingerprint."""
    config = getattr(model, "config", None)
    parts = {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(config),
        "weights": _weights_fingerprint(model),
        "processing": _processing_fingerprint(processing_class),
        "settings": settings,
        "dataset": getattr(dataset, "_fingerprint", None),
        "rows": len(dataset),
    }
    if parts["dataset"] is None:
        raise ValueError("cache_dir needs a datasets.Dataset with a fingerprint")
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write array to a temporary .npy in the same folder, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions of a new file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def _pool(output: Any, pooling: str, mask: torch.Tensor | None, layer: int | None = None) -> torch.Tensor:
    """Pool a model output: "projection" (``get_*_features``: a tensor in older transformers, else its
    pooler_output), "mean" over the mask (all tokens if None), "cls" (token 0) or "pooler"; "mean" and "cls" read
    ``hidden_states[layer]`` when a layer is given, else ``last_hidden_state``."""
    if pooling == "projection":
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    if pooling == "pooler":
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            raise ValueError("pooling='pooler' needs a model with a pooler (pooler_output is None)")
        return pooled
    hidden = output.last_hidden_state if layer is None else output.hidden_states[layer]
    if pooling == "cls":
        return hidden[:, 0]
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


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
        pooled = _pool(output, pooling, mask, layer).float()
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

    Args:
        model: a text encoder (``BertModel``-like, or any ``*ForSequenceClassification``: its ``base_model`` is
            used), an image encoder (``ViTModel``, ``Dinov2Model``, ...), or a dual encoder (``CLIPModel``,
            ``VisionTextDualEncoderModel``) whose ``get_text_features``/``get_image_features`` are used.
        dataset: a ``datasets.Dataset`` (a list of strings is accepted and becomes a ``text_column``).
        processing_class: tokenizer (or processor holding one) for raw text; image processor for image columns.
        pooling: "mean" (over the attention mask), "cls" (first token), "pooler" (``pooler_output``) or "auto"
            (mean for text, cls for images, projected features for dual encoders).
        normalize: L2-normalise each vector.
        batch_size: rows per forward pass.
        text_column: column of raw text.
        image_column: column of pixel values or images.
        tower: "image" or "text" for dual encoders (inferred from the columns when only one kind is present).
        max_length: truncation length when tokenizing ``text_column``.
        cache_dir: folder for an on-disk cache keyed by model class, config, weights, settings, processing class
            and ``dataset._fingerprint``; a hit is loaded without running the model.
        accelerator: an ``accelerate.Accelerator`` or ``PartialState``; with several processes (also detected from
            ``WORLD_SIZE`` when None) each encodes a contiguous shard and every process returns all rows.
        show_progress: show a tqdm progress bar (main process only).
        layer: pool ``hidden_states[layer]`` (0 = the embeddings, 1..L the layers' outputs before any final
            norm; negative counts from the end) instead of the last hidden state; "mean" and "cls" pooling only,
            not dual encoders. An intermediate layer can cluster better when the top layers were tuned for
            another task.

    Returns:
        (len(dataset), dim) float32 array.
    """
    from datasets import Dataset

    if isinstance(dataset, (list, tuple)):
        dataset = Dataset.from_dict({text_column: list(dataset)})
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    model = _unwrap_peft(model)
    kind = _model_kind(model)
    tower = _resolve_tower(kind, tower, dataset.column_names, text_column, image_column)
    resolved = _resolve_pooling(kind, pooling)
    if layer is not None:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layer must be an integer index into hidden_states or None, got {layer!r}")
        if resolved not in ("mean", "cls"):
            raise ValueError(f"layer= needs pooling='mean' or 'cls' (got {resolved!r}); dual encoders' projected "
                             f"features and poolers use the last layer only")
        layer = int(layer)
    state = _distributed_state(accelerator)
    n_proc, rank = (int(state.num_processes), int(state.process_index)) if state is not None else (1, 0)
    is_main = rank == 0

    path = None
    if cache_dir is not None:
        settings = {"pooling": resolved, "normalize": bool(normalize), "tower": tower, "max_length": int(max_length),
                    "text_column": text_column, "image_column": image_column, "layer": layer}
        path = Path(cache_dir) / f"embeddings-{_cache_key(model, dataset, settings, processing_class)}.npy"
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
            _save_atomic(path, result)
        if state is not None:
            state.wait_for_everyone()
    return result
