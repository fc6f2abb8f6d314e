"""Unit tests of hf_ssl.augment.text on tiny hand-made batches (CPU, fast)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from hf_ssl.augment.text import (
    TextAugmenter,
    content_mask,
    delete_tokens,
    local_shuffle,
    mask_tokens,
    mlm_replace,
    replace_tokens,
    span_deletion,
    word_dropout,
)

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = {PAD, UNK, CLS, SEP, MASK}
VOCAB = 17  # 5 special tokens + 12 words (ids 5..16)


@pytest.fixture
def batch(tokenizer) -> dict:
    """Pairs of varying length (one row without content) with token_type_ids, right-padded."""
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id,
            tokenizer.mask_token_id, len(tokenizer)) == (PAD, UNK, CLS, SEP, MASK, VOCAB)
    first = ["alpha bravo charlie delta", "echo", "", "fox golf hotel india juliet kilo"]
    second = ["lima kilo", "juliet india hotel golf", "", "alpha"]
    out = dict(tokenizer(first, second, padding=True, return_tensors="pt"))
    out["labels"] = torch.tensor([0, 1, 2, 0])
    return out


def random_batch(n: int, width: int, seed: int = 0, min_len: int = 3) -> dict:
    """Rows [CLS] w... [SEP] [PAD]... of random lengths in [min_len, width]; row 0 is full."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, width + 1, (n,), generator=g)
    lengths[0] = width
    ids = torch.randint(5, VOCAB, (n, width), generator=g)
    am = (torch.arange(width) < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(n), lengths - 1] = SEP
    ids[am == 0] = PAD
    return {"input_ids": ids, "attention_mask": am, "token_type_ids": torch.zeros_like(ids)}


def distinct_batch(n: int, seed: int = 0) -> dict:
    """Rows whose content tokens are distinct words (so each token's origin is recoverable)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n, 14), PAD)
    am = torch.zeros_like(ids)
    for i in range(n):
        c = int(torch.randint(1, 13, (1,), generator=g))
        ids[i, : c + 2] = torch.cat([torch.tensor([CLS]), 5 + torch.randperm(12, generator=g)[:c], torch.tensor([SEP])])
        am[i, : c + 2] = 1
    return {"input_ids": ids, "attention_mask": am}


def rows(b: dict, key: str = "input_ids") -> list[list[int]]:
    return [r[m.bool()].tolist() for r, m in zip(b[key], b["attention_mask"], strict=True)]


def is_subsequence(small: list, big: list) -> bool:
    it = iter(big)
    return all(x in it for x in small)


def tiny_mlm() -> BertForMaskedLM:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    return BertForMaskedLM(cfg).eval()


def check_in_place(before: dict, after: dict) -> None:
    """Length-preserving op: specials, padding, attention and token types untouched; only content may change."""
    content = content_mask(before["input_ids"], before["attention_mask"], SPECIAL)
    assert torch.equal(after["attention_mask"], before["attention_mask"])
    assert torch.equal(after["input_ids"][~content], before["input_ids"][~content])
    assert not torch.isin(after["input_ids"][content], torch.tensor(sorted(SPECIAL - {MASK}))).any()
    if "token_type_ids" in before:
        assert torch.equal(after["token_type_ids"], before["token_type_ids"])


def check_deleted(before: dict, after: dict) -> None:
    """Deleting op: kept (token, type) pairs are an ordered subsequence, specials all kept, tail re-padded."""
    am = after["attention_mask"]
    assert after["input_ids"].shape == before["input_ids"].shape
    lengths = am.sum(1)
    assert torch.equal(am, (torch.arange(am.shape[1]) < lengths[:, None]).to(am.dtype))  # right-padded
    assert (after["input_ids"][am == 0] == PAD).all()
    tti = "token_type_ids" if "token_type_ids" in before else "input_ids"
    for old, new, old_t, new_t in zip(rows(before), rows(after), rows(before, tti), rows(after, tti), strict=True):
        assert is_subsequence(list(zip(new, new_t, strict=True)), list(zip(old, old_t, strict=True)))
        assert [t for t in new if t in SPECIAL] == [t for t in old if t in SPECIAL]


def test_content_mask(batch):
    m = content_mask(batch["input_ids"], batch["attention_mask"], SPECIAL)
    assert m.sum(1).tolist() == [6, 5, 0, 7]
    assert not m[:, 0].any() and not m[batch["attention_mask"] == 0].any()


@pytest.mark.parametrize("weak", ["identity", "token_dropout"])
def test_weak_keeps_length_and_attention(tokenizer, batch, weak):
    aug = TextAugmenter.from_tokenizer(tokenizer, weak=weak, weak_prob=0.5)
    out = aug.weak(batch, generator=torch.Generator().manual_seed(0))
    assert out is not batch and out.keys() == batch.keys()
    check_in_place(batch, out)
    changed = out["input_ids"] != batch["input_ids"]
    assert (out["input_ids"][changed] == MASK).all()
    assert changed.any() == (weak == "token_dropout")


def test_weak_token_dropout_uses_unk_without_mask_token(tokenizer):
    aug = TextAugmenter.from_tokenizer(tokenizer, weak="token_dropout", weak_prob=1.0, mask_token_id=None)
    b = random_batch(8, 10)
    out = aug.weak(b)
    content = content_mask(b["input_ids"], b["attention_mask"], SPECIAL)
    assert (out["input_ids"][content] == UNK).all() and torch.equal(out["attention_mask"], b["attention_mask"])


@pytest.mark.parametrize("op", ["mask", "replace", "local_shuffle", "mlm"])
def test_length_preserving_ops_keep_specials_and_padding(batch, op):
    g = torch.Generator().manual_seed(1)
    fns = {"mask": lambda: mask_tokens(batch, 0.5, MASK, SPECIAL, g),
           "replace": lambda: replace_tokens(batch, 0.5, VOCAB, SPECIAL, g),
           "local_shuffle": lambda: local_shuffle(batch, 3, SPECIAL, g),
           "mlm": lambda: mlm_replace(batch, tiny_mlm(), 0.5, MASK, SPECIAL, g)}
    out = fns[op]()
    assert out.keys() == batch.keys() and out["labels"] is batch["labels"]
    check_in_place(batch, out)
    assert not torch.equal(out["input_ids"], batch["input_ids"])


def test_delete_tokens_compacts_in_order_and_protects_specials(batch):
    ids = batch["input_ids"]
    drop = torch.zeros_like(ids, dtype=torch.bool)
    drop[0, [1, 3]] = True  # alpha, charlie
    drop[3, 2] = True  # golf
    drop[1, 0] = True  # [CLS]: protected when special_ids is given
    drop[2, -1] = True  # padding: never dropped
    out = delete_tokens(batch, drop, PAD, special_ids=SPECIAL)
    check_deleted(batch, out)
    old = rows(batch)
    assert rows(out) == [[t for j, t in enumerate(old[0]) if j not in (1, 3)], old[1], old[2],
                         [t for j, t in enumerate(old[3]) if j != 2]]
    assert (out["attention_mask"].sum(1) == batch["attention_mask"].sum(1) - torch.tensor([2, 0, 0, 1])).all()
    everything = delete_tokens(batch, torch.ones_like(drop), PAD, special_ids=SPECIAL)
    assert rows(everything) == [[CLS, SEP, SEP]] * 4


def test_word_dropout_deletes_and_keeps_one_content_token(batch):
    out = word_dropout(batch, 1.0, SPECIAL, PAD, torch.Generator().manual_seed(0))
    check_deleted(batch, out)
    kept = content_mask(out["input_ids"], out["attention_mask"], SPECIAL).sum(1)
    assert kept.tolist() == [1, 1, 0, 1]
    b = random_batch(64, 12, seed=2)
    half = word_dropout(b, 0.5, SPECIAL, PAD, torch.Generator().manual_seed(0))
    check_deleted(b, half)
    assert (content_mask(half["input_ids"], half["attention_mask"], SPECIAL).sum(1) >= 1).all()
    assert (half["attention_mask"].sum(1) < b["attention_mask"].sum(1)).any()


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_span_deletion_removes_one_contiguous_span(fraction):
    b = random_batch(40, 12, seed=3)
    out = span_deletion(b, fraction, SPECIAL, PAD, torch.Generator().manual_seed(0))
    check_deleted(b, out)
    for old, new in zip(rows(b), rows(out), strict=True):
        c = len(old) - 2
        span = min(c, max(round(fraction * c), 1 if c >= 2 else 0))
        assert len(new) == len(old) - span
        assert any(old[:s] + old[s + span:] == new for s in range(1, c - span + 2))


def test_local_shuffle_is_a_local_permutation():
    b = distinct_batch(60)
    window = 3
    out = local_shuffle(b, window, SPECIAL, torch.Generator().manual_seed(0))
    check_in_place(b, out)
    moved = 0
    for old, new in zip(b["input_ids"].tolist(), out["input_ids"].tolist(), strict=True):
        assert sorted(old) == sorted(new)
        for j, t in enumerate(new):
            if t in SPECIAL:
                continue
            assert abs(old.index(t) - j) < window
            moved += old.index(t) != j
    assert moved > 0
    assert torch.equal(local_shuffle(b, 1, SPECIAL)["input_ids"], b["input_ids"])


def test_replace_draws_uniform_non_special_ids():
    b = random_batch(200, 20, seed=4)
    out = replace_tokens(b, 1.0, VOCAB, SPECIAL, torch.Generator().manual_seed(0))
    check_in_place(b, out)
    drawn = out["input_ids"][content_mask(b["input_ids"], b["attention_mask"], SPECIAL)]
    counts = torch.bincount(drawn, minlength=VOCAB).float()
    assert (counts[:5] == 0).all()
    assert ((counts[5:] - counts[5:].mean()).abs() < 0.25 * counts[5:].mean()).all()


@pytest.mark.parametrize("prob", [0.1, 0.3, 0.7])
def test_masking_and_dropout_rates_match_prob(prob):
    b = random_batch(400, 40, seed=5)
    content = content_mask(b["input_ids"], b["attention_mask"], SPECIAL)
    masked = mask_tokens(b, prob, MASK, SPECIAL, torch.Generator().manual_seed(0))
    rate = (masked["input_ids"][content] == MASK).float().mean().item()
    assert abs(rate - prob) < 0.03
    dropped = word_dropout(b, prob, SPECIAL, PAD, torch.Generator().manual_seed(1))
    drop_rate = 1 - dropped["attention_mask"].sum().item() / b["attention_mask"].sum().item()
    assert abs(drop_rate - prob * content.sum().item() / b["attention_mask"].sum().item()) < 0.03


def test_generator_makes_output_reproducible(tokenizer):
    b = random_batch(32, 16, seed=6)
    aug = TextAugmenter.from_tokenizer(tokenizer, weak="token_dropout", strong_prob=0.4, strong_num_ops=3,
                                       strong_ops=("mask", "replace", "word_dropout", "span_deletion",
                                                   "local_shuffle", "mlm"), mlm_model=tiny_mlm())
    ops = [lambda g: mask_tokens(b, 0.3, MASK, SPECIAL, g), lambda g: replace_tokens(b, 0.3, VOCAB, SPECIAL, g),
           lambda g: word_dropout(b, 0.3, SPECIAL, PAD, g), lambda g: span_deletion(b, 0.3, SPECIAL, PAD, g),
           lambda g: local_shuffle(b, 3, SPECIAL, g), lambda g: mlm_replace(b, aug.mlm_model, 0.3, MASK, SPECIAL, g),
           lambda g: aug.weak(b, g), lambda g: aug.strong(b, g)]
    for op in ops:
        first, again = op(torch.Generator().manual_seed(7)), op(torch.Generator().manual_seed(7))
        other = op(torch.Generator().manual_seed(8))
        for key in b:
            assert torch.equal(first[key], again[key])
        assert not all(torch.equal(first[k], other[k]) for k in b)


def test_strong_changes_the_batch(tokenizer, batch):
    aug = TextAugmenter.from_tokenizer(tokenizer, strong_prob=0.5)
    out = aug.strong(batch, torch.Generator().manual_seed(0))
    assert out.keys() == batch.keys() and out["labels"] is batch["labels"]
    assert out["input_ids"].shape == batch["input_ids"].shape
    assert not torch.equal(out["input_ids"], batch["input_ids"])
    assert (out["input_ids"][out["attention_mask"] == 0] == PAD).all()
    specials = [[t for t in r if t in (CLS, SEP)] for r in rows(out)]
    assert specials == [[t for t in r if t in (CLS, SEP)] for r in rows(batch)]


def test_strong_chooses_ops_per_row(tokenizer):
    b = random_batch(64, 12, seed=8, min_len=4)
    aug = TextAugmenter.from_tokenizer(tokenizer, strong_ops=("span_deletion", "mask"), strong_num_ops=1,
                                       strong_prob=0.5)
    out = aug.strong(b, torch.Generator().manual_seed(0))
    shortened = out["attention_mask"].sum(1) < b["attention_mask"].sum(1)
    has_mask = (out["input_ids"] == MASK).any(1)
    assert shortened.any() and (~shortened).any()
    assert not (shortened & has_mask).any()  # one op per row
    assert has_mask[~shortened].float().mean() > 0.5
    both = TextAugmenter.from_tokenizer(tokenizer, strong_ops=("span_deletion", "mask"), strong_num_ops=2,
                                        strong_prob=0.5).strong(b)
    # Masking first can leave < 2 content tokens ([MASK] is special), where a span of 0.5 * c rounds to 0.
    few_left = content_mask(both["input_ids"], both["attention_mask"], SPECIAL).sum(1) <= 1
    assert ((both["attention_mask"].sum(1) < b["attention_mask"].sum(1)) | few_left).all()


def test_mask_op_falls_back_to_replace_without_mask_token(tokenizer):
    b = random_batch(32, 12, seed=9)
    aug = TextAugmenter.from_tokenizer(tokenizer, mask_token_id=None, strong_ops=("mask",), strong_num_ops=1,
                                       strong_prob=1.0)
    out = aug.strong(b, torch.Generator().manual_seed(0))
    check_in_place(b, out)
    assert not (out["input_ids"] == MASK).any() and not torch.equal(out["input_ids"], b["input_ids"])


def test_mlm_replace_changes_only_content_and_strong_mlm(tokenizer):
    b = random_batch(16, 12, seed=10)
    model = tiny_mlm()
    out = mlm_replace(b, model, 1.0, MASK, SPECIAL, torch.Generator().manual_seed(0))
    check_in_place(b, out)
    assert not (out["input_ids"] == MASK).any()
    assert torch.equal(mlm_replace(b, model, 0.0, MASK, SPECIAL)["input_ids"], b["input_ids"])
    aug = TextAugmenter.from_tokenizer(tokenizer, strong_ops=("mlm", "local_shuffle"), strong_num_ops=2,
                                       strong_prob=0.5, mlm_model=model)
    check_in_place(b, aug.strong(b))


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"weak": "heavy"}, "weak"),
    ({"weak_prob": 1.5}, "weak_prob"),
    ({"strong_prob": -0.1}, "strong_prob"),
    ({"strong_ops": ("mask", "backtranslate")}, "strong_ops"),
    ({"strong_ops": ()}, "strong_ops"),
    ({"strong_ops": ("mask", "mask")}, "strong_ops"),
    ({"strong_num_ops": 0}, "strong_num_ops"),
    ({"strong_num_ops": 6}, "strong_num_ops"),
    ({"shuffle_window": 0}, "shuffle_window"),
    ({"strong_ops": ("mlm", "mask")}, "mlm_model"),
    ({"pad_token_id": None}, "pad_token_id"),
])
def test_invalid_arguments_raise(tokenizer, kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        TextAugmenter.from_tokenizer(tokenizer, **kwargs)
    if "backtranslate" in str(kwargs):
        assert "local_shuffle" in str(info.value)  # lists the valid names


def test_invalid_function_arguments_raise(batch):
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(batch, 1.2, MASK, SPECIAL)
    with pytest.raises(ValueError, match="span_fraction"):
        span_deletion(batch, -0.5, SPECIAL, PAD)
    with pytest.raises(ValueError, match="window"):
        local_shuffle(batch, 0, SPECIAL)
    with pytest.raises(ValueError, match="input_ids"):
        mask_tokens({"input_ids": batch["input_ids"]}, 0.5, MASK, SPECIAL)


def test_inputs_are_not_modified(tokenizer, batch):
    snapshot = {k: v.clone() for k, v in batch.items()}
    aug = TextAugmenter.from_tokenizer(tokenizer, weak="token_dropout", weak_prob=0.5, strong_prob=0.5,
                                       strong_num_ops=3, mlm_model=tiny_mlm(),
                                       strong_ops=("mask", "replace", "word_dropout", "span_deletion",
                                                   "local_shuffle", "mlm"))
    aug.weak(batch), aug.strong(batch)
    mask_tokens(batch, 0.5, MASK, SPECIAL), replace_tokens(batch, 0.5, VOCAB, SPECIAL)
    word_dropout(batch, 0.5, SPECIAL, PAD), span_deletion(batch, 0.5, SPECIAL, PAD), local_shuffle(batch, 3, SPECIAL)
    mlm_replace(batch, aug.mlm_model, 0.5, MASK, SPECIAL)
    delete_tokens(batch, torch.ones_like(batch["input_ids"], dtype=torch.bool), PAD)
    assert all(torch.equal(batch[k], snapshot[k]) for k in snapshot)
