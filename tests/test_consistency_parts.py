"""Pure parts of consistency regularization: losses, thresholds, EMA teacher, collator and views."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.tiny import tiny_bert
from transformers import DataCollatorWithPadding

from hf_ssl.augment.text import TextAugmenter
from hf_ssl.data.collators import ConsistencyCollator, concat_inputs, make_views
from hf_ssl.methods.ema import EMATeacher
from hf_ssl.methods.losses import align_distribution, consistency_loss, entropy_loss, mix_graph_prior, mixup, sharpen
from hf_ssl.methods.thresholds import (
    ConfidenceMasker,
    flexmatch_thresholds,
    flexmatch_update,
    freematch_thresholds,
    freematch_update,
    softmatch_update,
    softmatch_weights,
)
from hf_ssl.trainer.consistency_config import ConsistencyConfig


def probs_with_confidence(confidence: float, n: int = 8, classes: int = 4, top: int = 0) -> torch.Tensor:
    rest = (1 - confidence) / (classes - 1)
    p = torch.full((n, classes), rest)
    p[:, top] = confidence
    return p


# ----------------------------------------------------------------------------- losses
def test_sharpen_lowers_entropy_and_keeps_argmax():
    p = torch.softmax(torch.randn(16, 5), dim=-1)
    s = sharpen(p, 0.5)
    assert torch.allclose(s.sum(-1), torch.ones(16))
    assert torch.equal(s.argmax(-1), p.argmax(-1))
    entropy = lambda q: -(q * q.log()).sum(-1)  # noqa: E731
    assert (entropy(s) < entropy(p)).all()
    assert torch.allclose(sharpen(p, 1.0), p, atol=1e-6)


def test_consistency_losses_are_zero_at_agreement_and_masked_rows_do_not_count():
    logits = torch.randn(6, 3)
    target = torch.softmax(logits, dim=-1)
    assert consistency_loss(logits, target, "kl").abs() < 1e-5
    assert consistency_loss(logits, target, "mse").abs() < 1e-8
    # CE against hard labels equals F.cross_entropy
    hard = F.one_hot(target.argmax(-1), 3).float()
    assert torch.allclose(consistency_loss(logits, hard, "ce"), F.cross_entropy(logits, target.argmax(-1)))
    # zero weight rows do not contribute; gradient flows only to weighted rows
    logits = logits.clone().requires_grad_(True)
    weights = torch.tensor([1.0, 0, 0, 1.0, 0, 0])
    consistency_loss(logits, torch.full((6, 3), 1 / 3), "ce", weights).backward()
    assert (logits.grad[weights == 0] == 0).all() and (logits.grad[weights == 1] != 0).any()
    with pytest.raises(ValueError, match="kind"):
        consistency_loss(logits, target, "hinge")


def test_entropy_and_alignment():
    assert entropy_loss(torch.zeros(2, 4)).item() == pytest.approx(math.log(4))
    assert entropy_loss(torch.tensor([[100.0, 0, 0]])).item() < 1e-6
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4]])
    aligned = align_distribution(probs, model_prior=torch.tensor([0.65, 0.35]), target_prior=torch.tensor([0.5, 0.5]))
    assert torch.allclose(aligned.sum(-1), torch.ones(2))
    assert (aligned[:, 0] < probs[:, 0]).all()  # over-predicted class is scaled down


def test_graph_prior_mix_favours_agreement_and_leaves_rows_without_a_graph_class():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.98, 0.01, 0.01]])
    graph = torch.tensor([0, 1, -1, 1])
    mixed = mix_graph_prior(probs, graph, 0.5)
    assert torch.allclose(mixed.sum(dim=-1), torch.ones(4))
    # agreement: 0.5 + 0.5 p passes tau 0.7; disagreement: neither class reaches it; no graph class: unchanged
    assert torch.allclose(mixed[0], torch.tensor([0.8, 0.15, 0.05]))
    assert mixed[1].max() < 0.7 and mixed[1].argmax() == 1
    assert torch.equal(mixed[2], probs[2])
    assert torch.equal(mix_graph_prior(probs, graph, 0.0), probs)
    assert torch.equal(mix_graph_prior(probs, graph, 1.0)[1], torch.tensor([0.0, 1.0, 0.0]))


def test_mixup_keeps_convex_combinations():
    torch.manual_seed(0)
    x = torch.randn(10, 4)
    y = F.one_hot(torch.arange(10) % 3, 3).float()
    mixed, targets, lam, perm = mixup(x, y, alpha=0.75)
    assert 0.5 <= lam <= 1
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])
    assert torch.allclose(targets.sum(-1), torch.ones(10))


# ----------------------------------------------------------------------------- thresholds
def test_fixed_threshold_masks_rows_below_tau():
    p = torch.tensor([[0.96, 0.04], [0.6, 0.4], [0.05, 0.95]])
    assert ConfidenceMasker("fixed", num_classes=2, num_rows=3, threshold=0.95)(p).tolist() == [1.0, 0.0, 1.0]


def test_flexmatch_thresholds_rise_as_classes_are_learned():
    row_class = torch.full((100,), -1)
    assert torch.all(flexmatch_thresholds(row_class, 2, 0.95) == 0)  # warm-up: nothing learned yet, low thresholds
    learned = flexmatch_update(row_class, torch.arange(60), probs_with_confidence(0.97, 60, 2, top=0), 0.95)
    assert (learned[:60] == 0).all() and (learned[60:] == -1).all()
    t = flexmatch_thresholds(learned, 2, 0.95)
    assert t[0] > t[1] and t[0] == pytest.approx(0.95)  # the learned class reaches τ, the other stays lower
    # more rows of class 1 confidently predicted: its threshold rises
    more = flexmatch_update(learned, torch.arange(60, 90), probs_with_confidence(0.97, 30, 2, top=1), 0.95)
    assert flexmatch_thresholds(more, 2, 0.95)[1] > t[1]
    # rows under τ do not count
    unchanged = flexmatch_update(learned, torch.arange(60, 90), probs_with_confidence(0.6, 30, 2, top=1), 0.95)
    assert torch.equal(unchanged, learned)


def test_freematch_threshold_moves_with_confidence():
    g, prior = torch.tensor(0.25), torch.full((4,), 0.25)
    for _ in range(50):
        g_hi, prior_hi = freematch_update(g, prior, probs_with_confidence(0.9), 0.9)
        g, prior = g_hi, prior_hi
    assert g > 0.8  # global threshold rises towards the mean confidence
    t = freematch_thresholds(g, prior)
    assert t[0] == pytest.approx(float(g)) and (t[1:] < t[0]).all()  # rarely predicted classes get lower thresholds
    g_lo, _ = freematch_update(g, prior, probs_with_confidence(0.4), 0.9)
    assert g_lo < g


def test_softmatch_weights_truncated_gaussian():
    mean, var = torch.tensor(0.25), torch.tensor(1.0)
    for _ in range(100):
        batch = torch.cat([probs_with_confidence(0.9, 4), probs_with_confidence(0.5, 4)])
        mean, var = softmatch_update(mean, var, batch, 0.9)
    assert 0.65 < mean < 0.75
    w = softmatch_weights(torch.cat([probs_with_confidence(0.95, 1), probs_with_confidence(0.6, 1),
                                     probs_with_confidence(0.3, 1)]), mean, var)
    assert w[0] == 1.0 and 0 < w[2] < w[1] < 1  # full weight above the mean, decaying below it


@pytest.mark.parametrize("strategy", ["fixed", "flexmatch", "freematch", "softmatch"])
def test_masker_state_round_trip(strategy):
    masker = ConfidenceMasker(strategy, num_classes=4, num_rows=20, threshold=0.8, momentum=0.5)
    for step in range(3):
        weights = masker(probs_with_confidence(0.85 + 0.03 * step), torch.arange(8) + step)
        assert weights.shape == (8,) and ((weights >= 0) & (weights <= 1)).all()
    clone = ConfidenceMasker(strategy, num_classes=4, num_rows=20, threshold=0.8, momentum=0.5)
    clone.load_state_dict(masker.state_dict())
    p = probs_with_confidence(0.82)
    assert torch.equal(clone(p, torch.arange(8), update=False), masker(p, torch.arange(8), update=False))
    other = "softmatch" if strategy != "softmatch" else "fixed"
    with pytest.raises(ValueError, match="threshold_strategy"):
        ConfidenceMasker(other, 4, 20).load_state_dict(masker.state_dict())


# ----------------------------------------------------------------------------- EMA teacher
def test_ema_teacher_tracks_trainable_parameters_only():
    model = tiny_bert()
    model.bert.embeddings.requires_grad_(False)
    ema = EMATeacher(model, decay=0.5)
    assert not any(name.startswith("bert.embeddings") for name in ema.shadow)
    before = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    name = "classifier.weight"
    decay = min(0.5, 1 / 10)
    assert torch.allclose(ema.shadow[name], before[name] * decay + (before[name] + 1) * (1 - decay))
    inputs = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    model.eval()
    teacher = ema(model, inputs).logits
    with ema.swapped_in(model):
        swapped = model(**inputs).logits
    assert torch.allclose(teacher, swapped, atol=1e-6)
    assert not torch.allclose(model(**inputs).logits, teacher)  # student weights are back
    state = ema.state_dict()
    fresh = EMATeacher(model, decay=0.5)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.shadow[k], ema.shadow[k]) for k in ema.shadow)


# ----------------------------------------------------------------------------- collator and views
def test_collator_yields_weak_and_strong_views_and_precomputed_strong(tokenizer):
    rows = [tokenizer(t) for t in ["alpha bravo charlie delta", "echo fox", "golf hotel india juliet kilo"]]
    for i, row in enumerate(rows):
        row["ssl_index"] = i
    augmenter = TextAugmenter.from_tokenizer(tokenizer, weak="token_dropout", weak_prob=0.3, strong_prob=0.5)
    collator = ConsistencyCollator(DataCollatorWithPadding(tokenizer), augmenter, num_weak_views=2)
    batch = collator([dict(r) for r in rows])
    assert len(batch["weak"]) == 2 and batch["ssl_index"].tolist() == [0, 1, 2]
    for view in (*batch["weak"], batch["strong"]):
        assert view["input_ids"].shape == batch["weak"][0]["input_ids"].shape
    # weak views keep every row's length
    assert torch.equal(batch["weak"][0]["attention_mask"], batch["weak"][1]["attention_mask"])
    # precomputed strong views (e.g. back-translations) are used as they are
    for row, text in zip(rows, ["lima kilo", "juliet", "india hotel golf"], strict=True):
        strong = tokenizer(text)
        row["strong_input_ids"], row["strong_attention_mask"] = strong["input_ids"], strong["attention_mask"]
    batch = collator([dict(r) for r in rows])
    assert batch["strong"]["input_ids"][1].tolist()[:3] == tokenizer("juliet")["input_ids"]
    # without an augmenter the collator returns the raw batch and views are made later
    raw = ConsistencyCollator(DataCollatorWithPadding(tokenizer))([dict(r) for r in rows])
    assert "weak" not in raw and "strong_input_ids" in raw
    views = make_views(raw, augmenter, 1, "strong_", ("ssl_index",))
    assert torch.equal(views["strong"]["input_ids"], raw["strong_input_ids"])


def test_concat_inputs_pads_to_the_widest():
    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.ones(1, 5, dtype=torch.long), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    merged = concat_inputs([a, b], pad_token_id=7)
    assert merged["input_ids"].shape == (3, 5)
    assert merged["input_ids"][0].tolist() == [1, 1, 1, 7, 7] and merged["attention_mask"][0].tolist()[3:] == [0, 0]


def test_config_defaults_per_method_and_ramp(tmp_path):
    fix = ConsistencyConfig(output_dir=str(tmp_path), method="fixmatch")
    assert (fix.threshold, fix.consistency_loss, fix.use_ema_teacher) == (0.7, "ce", False)
    assert (fix.graph_prior_weight, fix.head_init) == (0.5, "linear_probe")
    uda = ConsistencyConfig(output_dir=str(tmp_path), method="uda")
    assert (uda.threshold, uda.temperature, uda.consistency_loss) == (0.8, 0.4, "kl")
    mt = ConsistencyConfig(output_dir=str(tmp_path), method="mean_teacher")
    assert (mt.threshold, mt.consistency_loss, mt.use_ema_teacher) == (0.0, "mse", True)
    ramp = ConsistencyConfig(output_dir=str(tmp_path), unlabeled_loss_weight=2.0, unlabeled_loss_warmup_steps=10)
    assert ramp.unlabeled_weight(0) == 0 and ramp.unlabeled_weight(5) == 1.0 and ramp.unlabeled_weight(50) == 2.0
    sig = ConsistencyConfig(output_dir=str(tmp_path), unlabeled_loss_warmup_steps=10, unlabeled_loss_ramp="sigmoid")
    assert 0 < sig.unlabeled_weight(5) < 0.5 < sig.unlabeled_weight(9) < 1


@pytest.mark.parametrize("field,value", [
    ("method", "remixmatch"), ("threshold_strategy", "adamatch"), ("threshold", 1.5), ("threshold", float("nan")),
    ("temperature", 0.0), ("consistency_loss", "hinge"), ("ema_decay", 1.0), ("alignment_target", "prior"),
    ("unlabeled_loss_ramp", "cosine"), ("unlabeled_loss_warmup_steps", -1), ("entropy_weight", -0.1),
    ("mixmatch_num_views", 0), ("mixup_alpha", 0.0), ("augment_in", "worker"), ("strong_augment_ops", ["rotate"]),
    ("softmatch_n_sigma", 0.0), ("graph_prior_weight", 1.5), ("graph_prior_every", -1), ("n_neighbors", 0),
    ("alpha", 1.0), ("pooling", "max")])
def test_config_rejects_bad_values(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        ConsistencyConfig(output_dir=str(tmp_path), **{field: value})


@pytest.mark.parametrize("settings,names", [
    (dict(method="mixmatch", threshold_strategy="flexmatch"), ["threshold_strategy", "mixmatch", "'fixed'"]),
    (dict(method="mean_teacher", use_ema_teacher=False), ["mean_teacher", "use_ema_teacher=False", "pi_model"]),
    (dict(method="mixmatch", entropy_weight=0.1), ["entropy_weight=0.1", "mixmatch", "entropy_weight=0"]),
])
def test_config_rejects_settings_that_contradict_the_method(tmp_path, settings, names):
    with pytest.raises(ValueError) as error:
        ConsistencyConfig(output_dir=str(tmp_path), **settings)
    assert all(name in str(error.value) for name in names), str(error.value)


def test_config_accepts_the_non_contradictory_neighbours(tmp_path):
    ConsistencyConfig(output_dir=str(tmp_path), method="mixmatch", threshold=0.4)  # a fixed threshold still applies
    ConsistencyConfig(output_dir=str(tmp_path), method="mean_teacher", use_ema_teacher=True)
    ConsistencyConfig(output_dir=str(tmp_path), method="pi_model", use_ema_teacher=False, entropy_weight=0.1)
    assert ConsistencyConfig(output_dir=str(tmp_path), method="mixmatch", mixmatch_num_views=3).num_weak_views == 3
    assert ConsistencyConfig(output_dir=str(tmp_path), method="uda", mixmatch_num_views=3).num_weak_views == 1
