"""Batched text augmentations on tokenized, padded tensors (weak / strong views for FixMatch / UDA style training).

Every function takes a batch dict with `input_ids` (n x L), `attention_mask` (n x L) and optionally
`token_type_ids`, and returns a new dict with the same keys (other keys are passed through unchanged); inputs are
never modified in place. Special tokens (a set of ids) and padding are never changed. Deleting ops compact the kept
tokens to the left and re-pad the tail, so the width L is unchanged. All randomness comes from the global torch RNG,
or from `generator` when given; all ops are vectorised over rows and run on the tensors' device.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "STRONG_OPS", "WEAK_OPS", "content_mask", "mask_tokens", "replace_tokens", "delete_tokens", "word_dropout",
    "span_deletion", "local_shuffle", "mlm_replace", "TextAugmenter",
]

Batch = dict[str, Any]
STRONG_OPS = ("mask", "replace", "word_dropout", "span_deletion", "local_shuffle", "mlm")
"""Names of the strong-view operations `TextAugmenter(strong_ops=...)` draws from ("mlm" needs ``mlm_model``)."""
WEAK_OPS = ("identity", "token_dropout")
"""Names of the weak views `TextAugmenter(weak=...)` accepts."""


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) floats on `device`, drawn from `generator` (on its own device) or the global RNG."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}; pass a value between 0 and 1.")


def _unpack(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if "input_ids" not in batch or "attention_mask" not in batch:
        raise ValueError("batch must contain 'input_ids' and 'attention_mask' tensors; tokenize with padding first.")
    return batch["input_ids"], batch["attention_mask"]


def content_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Iterable[int]) -> torch.Tensor:
    """Bool mask of the positions that may be augmented: attended and not a special token.

    Args:
        input_ids: token ids, n x L.
        attention_mask: 1 for real tokens, 0 for padding, n x L.
        special_ids: ids of special tokens ([CLS], [SEP], [PAD], ...), never augmented.
    """
    mask = attention_mask.bool()
    special = torch.as_tensor(sorted({int(i) for i in special_ids}), dtype=input_ids.dtype, device=input_ids.device)
    if special.numel():
        mask = mask & ~torch.isin(input_ids, special)
    return mask


def _with_ids(batch: Batch, input_ids: torch.Tensor) -> Batch:
    return {**batch, "input_ids": input_ids}


def mask_tokens(batch: Batch, prob: float, mask_token_id: int, special_ids: Iterable[int],
                generator: torch.Generator | None = None) -> Batch:
    """Replace each content token by `mask_token_id` with probability `prob` (length unchanged).

    Args:
        batch: dict with `input_ids` and `attention_mask`.
        prob: per-token masking probability in [0, 1].
        mask_token_id: id written at masked positions.
        special_ids: ids never masked.
        generator: optional torch RNG.
    """
    _check_prob("prob", prob)
    ids, am = _unpack(batch)
    hit = content_mask(ids, am, special_ids) & (_rand(ids.shape, ids.device, generator) < prob)
    return _with_ids(batch, torch.where(hit, torch.full_like(ids, int(mask_token_id)), ids))


def replace_tokens(batch: Batch, prob: float, vocab_size: int, special_ids: Iterable[int],
                   generator: torch.Generator | None = None) -> Batch:
    """Replace each content token with probability `prob` by an id drawn uniformly from the non-special vocabulary.

    Args:
        batch: dict with `input_ids` and `attention_mask`.
        prob: per-token replacement probability in [0, 1].
        vocab_size: ids are drawn from range(vocab_size) minus `special_ids`.
        special_ids: ids never replaced and never drawn.
        generator: optional torch RNG.
    """
    _check_prob("prob", prob)
    ids, am = _unpack(batch)
    special = torch.as_tensor(sorted({int(i) for i in special_ids}), dtype=torch.long, device=ids.device)
    allowed = torch.arange(int(vocab_size), device=ids.device)
    allowed = allowed[~torch.isin(allowed, special)] if special.numel() else allowed
    if allowed.numel() == 0:
        raise ValueError(f"vocab_size={vocab_size} leaves no non-special id to draw; pass the full vocabulary size.")
    hit = content_mask(ids, am, special_ids) & (_rand(ids.shape, ids.device, generator) < prob)
    pick = (_rand(ids.shape, ids.device, generator) * allowed.numel()).long().clamp_max(allowed.numel() - 1)
    return _with_ids(batch, torch.where(hit, allowed[pick].to(ids.dtype), ids))


def delete_tokens(batch: Batch, drop: torch.Tensor, pad_token_id: int, *, special_ids: Iterable[int] = ()) -> Batch:
    """Remove the positions where `drop` is True, compact kept tokens to the left (stable) and re-pad the tail.

    Padding positions and (when `special_ids` is given) special tokens are never dropped, whatever `drop` says.
    The output is right-padded; `token_type_ids` get the same gather and 0 in the new tail.

    Args:
        batch: dict with `input_ids`, `attention_mask` and optionally `token_type_ids`.
        drop: bool n x L, True at positions to delete.
        pad_token_id: id written into the freed tail.
        special_ids: ids that are protected from deletion.
    """
    ids, am = _unpack(batch)
    keep = am.bool() & ~(drop.to(ids.device).bool() & content_mask(ids, am, special_ids))
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    valid = torch.arange(ids.shape[1], device=ids.device) < keep.sum(dim=1, keepdim=True)
    out = {**batch, "input_ids": torch.where(valid, ids.gather(1, order), torch.full_like(ids, int(pad_token_id))),
           "attention_mask": valid.to(am.dtype)}
    if batch.get("token_type_ids") is not None:
        tti = batch["token_type_ids"]
        out["token_type_ids"] = torch.where(valid, tti.gather(1, order), torch.zeros_like(tti))
    return out


def word_dropout(batch: Batch, prob: float, special_ids: Iterable[int], pad_token_id: int,
                 generator: torch.Generator | None = None) -> Batch:
    """Delete each content token with probability `prob`, keeping at least one content token in non-empty rows.

    Args:
        batch: dict with `input_ids`, `attention_mask` and optionally `token_type_ids`.
        prob: per-token deletion probability in [0, 1].
        special_ids: ids never deleted.
        pad_token_id: id used to re-pad the tail.
        generator: optional torch RNG.
    """
    _check_prob("prob", prob)
    ids, am = _unpack(batch)
    content = content_mask(ids, am, special_ids)
    drop = content & (_rand(ids.shape, ids.device, generator) < prob)
    emptied = content.any(dim=1) & ~(content & ~drop).any(dim=1)
    # Rescue one random content position in rows that would lose all of their content.
    score = _rand(ids.shape, ids.device, generator).masked_fill(~content, -1.0)
    rescue = torch.zeros_like(drop).scatter_(1, score.argmax(dim=1, keepdim=True), True) & emptied[:, None]
    return delete_tokens(batch, drop & ~rescue, pad_token_id, special_ids=special_ids)


def span_deletion(batch: Batch, span_fraction: float, special_ids: Iterable[int], pad_token_id: int,
                  generator: torch.Generator | None = None) -> Batch:
    """Delete one contiguous span of content tokens per row, starting at a uniformly random content position.

    The span has round(span_fraction * c) tokens for a row with c content tokens, and at least 1 when c >= 2.

    Args:
        batch: dict with `input_ids`, `attention_mask` and optionally `token_type_ids`.
        span_fraction: fraction in [0, 1] of each row's content tokens to delete.
        special_ids: ids never deleted (spans are contiguous over content tokens).
        pad_token_id: id used to re-pad the tail.
        generator: optional torch RNG.
    """
    _check_prob("span_fraction", span_fraction)
    ids, am = _unpack(batch)
    content = content_mask(ids, am, special_ids)
    count = content.sum(dim=1)
    span = torch.round(count.double() * float(span_fraction)).long()
    span = torch.minimum(torch.where(count >= 2, span.clamp_min(1), span), count)
    start = (_rand(count.shape, ids.device, generator) * (count - span + 1)).long()
    start = torch.minimum(start, count - span)
    rank = content.long().cumsum(dim=1) - 1
    drop = content & (rank >= start[:, None]) & (rank < (start + span)[:, None])
    return delete_tokens(batch, drop, pad_token_id, special_ids=special_ids)


def local_shuffle(batch: Batch, window: float, special_ids: Iterable[int],
                  generator: torch.Generator | None = None) -> Batch:
    """Permute content tokens locally: sort content positions by position + uniform(0, window).

    Each token moves by less than `window` positions; special tokens and padding stay in place; `window` <= 1 is
    the identity.

    Args:
        batch: dict with `input_ids` and `attention_mask`.
        window: shuffle window (>= 1).
        special_ids: ids that never move.
        generator: optional torch RNG.
    """
    if float(window) < 1:
        raise ValueError(f"window must be >= 1, got {window!r}; use 1 for no shuffling.")
    ids, am = _unpack(batch)
    content = content_mask(ids, am, special_ids)
    pos = torch.arange(ids.shape[1], device=ids.device, dtype=torch.float64).expand(ids.shape)
    fixed = pos + 2.0 * (ids.shape[1] + float(window))  # non-content positions sort after content, in order
    key = torch.where(content, pos + _rand(ids.shape, ids.device, generator).double() * float(window), fixed)
    order = torch.argsort(key, dim=1, stable=True)  # content tokens in shuffled order, then the rest
    slots = torch.argsort(torch.where(content, pos, fixed), dim=1, stable=True)  # content positions in order
    return _with_ids(batch, ids.clone().scatter_(1, slots, ids.gather(1, order)))


def mlm_replace(batch: Batch, mlm_model: Any, prob: float, mask_token_id: int, special_ids: Iterable[int],
                generator: torch.Generator | None = None) -> Batch:
    """Contextual replacement: mask a fraction `prob` of content tokens and sample replacements from an MLM.

    The model is called as `mlm_model(input_ids=..., attention_mask=...)` under `torch.inference_mode`; put it in
    eval mode beforehand for deterministic logits. Special ids are never sampled. Length unchanged.

    Args:
        batch: dict with `input_ids` and `attention_mask`.
        mlm_model: a transformers `*ForMaskedLM` sharing the tokenizer's vocabulary.
        prob: per-token replacement probability in [0, 1].
        mask_token_id: id of the mask token fed to the model.
        special_ids: ids never replaced and never sampled.
        generator: optional torch RNG.
    """
    _check_prob("prob", prob)
    ids, am = _unpack(batch)
    hit = content_mask(ids, am, special_ids) & (_rand(ids.shape, ids.device, generator) < prob)
    if not bool(hit.any()):
        return _with_ids(batch, ids.clone())
    params = next(iter(mlm_model.parameters()), None) if hasattr(mlm_model, "parameters") else None
    device = params.device if params is not None else ids.device
    masked = torch.where(hit, torch.full_like(ids, int(mask_token_id)), ids)
    with torch.inference_mode():
        logits = mlm_model(input_ids=masked.to(device), attention_mask=am.to(device)).logits[hit.to(device)].float()
        special = [i for i in {int(i) for i in special_ids} if 0 <= i < logits.shape[-1]]
        logits[:, special] = float("-inf")
        probs = torch.softmax(logits, dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)
    sampled = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device=ids.device, dtype=ids.dtype)
    out = ids.clone()
    out[hit] = sampled
    return _with_ids(batch, out)


class TextAugmenter:
    """Weak and strong views of tokenized batches for consistency regularization.

    Parameters:
        vocab_size (`int`):
            Vocabulary size (> 0); ids drawn by `"replace"` come from ``range(vocab_size)`` minus the special ids.
        pad_token_id (`int`):
            Id used to re-pad rows shortened by deleting ops.
        mask_token_id (`int` or `None`):
            Mask id; `None` makes the `"mask"` op fall back to `"replace"`.
        special_ids (`Iterable[int]`):
            Ids never changed or moved.
        weak (`str`, *optional*, defaults to `"identity"`):
            Weak view, one of `WEAK_OPS`: `"identity"` or `"token_dropout"` (mask / UNK each content token with
            probability ``weak_prob``).
        weak_prob (`float`, *optional*, defaults to `0.1`):
            Token-dropout probability of the weak view, in [0, 1].
        strong_ops (`Sequence[str]`, *optional*, defaults to `("mask", "replace", "word_dropout", "span_deletion",
            "local_shuffle")`):
            Distinct op names each row's strong ops are drawn from, from `STRONG_OPS`.
        strong_num_ops (`int`, *optional*, defaults to `2`):
            Ops per row, in [1, len(strong_ops)], drawn without replacement and applied in a random order.
        strong_prob (`float`, *optional*, defaults to `0.2`):
            Probability / span fraction used by every strong op, in [0, 1].
        shuffle_window (`int`, *optional*, defaults to `3`):
            Window of `"local_shuffle"` (>= 1; 1 disables shuffling).
        mlm_model (`PreTrainedModel` or `None`, *optional*, defaults to `None`):
            A ``*ForMaskedLM`` model; required (with ``mask_token_id``) for the `"mlm"` op.
        unk_token_id (`int` or `None`, *optional*, defaults to `None`):
            Id used by `"token_dropout"` when there is no mask token.
    """

    def __init__(self, *, vocab_size: int, pad_token_id: int, mask_token_id: int | None, special_ids: Iterable[int],
                 weak: str = "identity", weak_prob: float = 0.1,
                 strong_ops: Sequence[str] = ("mask", "replace", "word_dropout", "span_deletion", "local_shuffle"),
                 strong_num_ops: int = 2, strong_prob: float = 0.2, shuffle_window: int = 3, mlm_model: Any = None,
                 unk_token_id: int | None = None):
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}; pass len(tokenizer).")
        if not isinstance(pad_token_id, int):
            raise ValueError(f"pad_token_id must be an int, got {pad_token_id!r}; set tokenizer.pad_token first.")
        if weak not in WEAK_OPS:
            raise ValueError(f"weak must be one of {WEAK_OPS}, got {weak!r}.")
        _check_prob("weak_prob", weak_prob)
        _check_prob("strong_prob", strong_prob)
        if isinstance(strong_ops, str) or not strong_ops:
            raise ValueError(f"strong_ops must be a non-empty sequence of op names from {list(STRONG_OPS)}, "
                             f"got {strong_ops!r}.")
        unknown = [op for op in strong_ops if op not in STRONG_OPS]
        if unknown:
            raise ValueError(f"strong_ops has unknown op name(s) {unknown}; valid names are {list(STRONG_OPS)}.")
        if len(set(strong_ops)) != len(strong_ops):
            raise ValueError(f"strong_ops must not repeat op names, got {list(strong_ops)}; list each op once.")
        if not isinstance(strong_num_ops, int) or not 1 <= strong_num_ops <= len(strong_ops):
            raise ValueError(f"strong_num_ops must be an int between 1 and len(strong_ops)={len(strong_ops)}, "
                             f"got {strong_num_ops!r}.")
        if not float(shuffle_window) >= 1:
            raise ValueError(f"shuffle_window must be >= 1, got {shuffle_window!r}; use 1 to disable shuffling.")
        if "mlm" in strong_ops and (mlm_model is None or mask_token_id is None):
            raise ValueError("strong_ops contains 'mlm' but mlm_model (and a mask_token_id) is missing; pass "
                             "mlm_model=<a *ForMaskedLM model> or remove 'mlm' from strong_ops.")
        if weak == "token_dropout" and mask_token_id is None and unk_token_id is None:
            raise ValueError("weak='token_dropout' needs mask_token_id or unk_token_id; pass one of them or use "
                             "weak='identity'.")
        self.vocab_size, self.pad_token_id = vocab_size, pad_token_id
        self.mask_token_id, self.unk_token_id = mask_token_id, unk_token_id
        self.special_ids = frozenset(int(i) for i in special_ids)
        self.weak_mode, self.weak_prob = weak, float(weak_prob)
        self.strong_ops, self.strong_num_ops = tuple(strong_ops), strong_num_ops
        self.strong_prob, self.shuffle_window, self.mlm_model = float(strong_prob), shuffle_window, mlm_model

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, **kwargs: Any) -> TextAugmenter:
        """Build from a tokenizer (vocab size, pad / mask / UNK ids, special ids); `kwargs` override or add options."""
        defaults = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                    "mask_token_id": getattr(tokenizer, "mask_token_id", None),
                    "unk_token_id": getattr(tokenizer, "unk_token_id", None),
                    "special_ids": tokenizer.all_special_ids}
        return cls(**(defaults | kwargs))

    def weak(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Weak view: a shallow copy ("identity") or token dropout to the mask / UNK id; row lengths unchanged."""
        if self.weak_mode == "identity":
            return dict(batch)
        fill = self.mask_token_id if self.mask_token_id is not None else self.unk_token_id
        return mask_tokens(batch, self.weak_prob, fill, self.special_ids, generator)

    def _apply(self, op: str, batch: Batch, generator: torch.Generator | None) -> Batch:
        p, sids = self.strong_prob, self.special_ids
        if op == "mask" and self.mask_token_id is not None:
            return mask_tokens(batch, p, self.mask_token_id, sids, generator)
        if op in ("mask", "replace"):
            return replace_tokens(batch, p, self.vocab_size, sids, generator)
        if op == "word_dropout":
            return word_dropout(batch, p, sids, self.pad_token_id, generator)
        if op == "span_deletion":
            return span_deletion(batch, p, sids, self.pad_token_id, generator)
        if op == "local_shuffle":
            return local_shuffle(batch, self.shuffle_window, sids, generator)
        return mlm_replace(batch, self.mlm_model, p, self.mask_token_id, sids, generator)

    def strong(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Strong view: each row gets `strong_num_ops` distinct ops drawn at random, applied in a random order.

        Vectorised: in each of the `strong_num_ops` rounds every op chosen by some row is run on the whole batch
        and its output is kept only in the rows that chose it (`torch.where` per row).
        """
        ids, _ = _unpack(batch)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if batch.get(k) is not None]
        choice = torch.argsort(_rand((ids.shape[0], len(self.strong_ops)), ids.device, generator), dim=1)
        out = dict(batch)
        for r in range(self.strong_num_ops):
            current = dict(out)
            for k, op in enumerate(self.strong_ops):
                rows = choice[:, r] == k
                if not bool(rows.any()):
                    continue
                new = self._apply(op, current, generator)
                out.update({key: torch.where(rows[:, None], new[key], out[key]) for key in keys})
        return out
