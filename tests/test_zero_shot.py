"""Zero-shot prior: equality with CLIP's own logits, prompt ensembling, argument checks, the prior in
LabelPropagator, the recipe flags, and real DINOv2 + MiniLM towers (random projections: no accuracy claim)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features
from helpers.tiny import WORDS, tiny_bert
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from hf_ssl import LabelPropagator, class_text_embeddings, encode, zero_shot_probabilities

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["alpha", "bravo", "golf hotel", "delta india juliet"]  # prompts of different token lengths


def clip_model(seed: int = 0, logit_scale: float = 30.0) -> CLIPModel:
    """A random 2-layer CLIP (hidden 32, projection 12) built from a config; logit_scale.exp() = ``logit_scale``."""
    torch.manual_seed(seed)
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    text = CLIPTextConfig(vocab_size=len(WORDS) + 5, max_position_embeddings=32, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3, **tiny)  # the test tokenizer's [CLS]/[SEP] ids
    vision = CLIPVisionConfig(image_size=16, patch_size=8, **tiny)
    model = CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=12))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale))
    return model.eval()


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 16, 16)).astype(np.float32)


def image_embeddings(model, images: np.ndarray) -> np.ndarray:
    return encode(model, Dataset.from_dict({"pixel_values": images}), batch_size=4, show_progress=False)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_single_template_equals_softmax_of_logits_per_image(tokenizer):
    model = clip_model()
    images = pixels(7)
    got = zero_shot_probabilities(model, tokenizer, NAMES, image_embeddings(model, images), templates="{} echo fox")
    batch = tokenizer([f"{name} echo fox" for name in NAMES], padding=True, return_tensors="pt")
    assert int(batch["attention_mask"].sum(1).min()) < batch["input_ids"].shape[1]  # padding is exercised
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    pixel_values=torch.from_numpy(images))
    expected = torch.softmax(out.logits_per_image.double(), dim=-1).numpy()
    assert got.shape == (7, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    assert np.ptp(expected, axis=1).min() > 0.05  # peaked enough for the comparison to mean something
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with torch.no_grad():  # raw, un-normalised image features (a torch tensor) give the same probabilities
        raw = model.get_image_features(pixel_values=torch.from_numpy(images))
    raw = getattr(raw, "pooler_output", raw)
    np.testing.assert_allclose(zero_shot_probabilities(model, tokenizer, NAMES, 3.0 * raw, "{} echo fox"),
                               expected, atol=1e-5)
    # temperature replaces the learned scale: 1/30 reproduces it, 1.0 flattens the distribution
    same = zero_shot_probabilities(model, tokenizer, NAMES, raw, "{} echo fox", temperature=1 / 30)
    np.testing.assert_allclose(same, expected, atol=1e-5)
    flat = zero_shot_probabilities(model, tokenizer, NAMES, raw, "{} echo fox", temperature=1.0)
    assert (flat.max(axis=1) < got.max(axis=1)).all()


def test_templates_are_averaged_then_renormalised(tokenizer):
    model = clip_model(seed=1)
    emb = image_embeddings(model, pixels(6, seed=1))
    templates = ["{}", "kilo lima {} echo"]
    one = zero_shot_probabilities(model, tokenizer, NAMES, emb, templates=templates[:1])
    both = zero_shot_probabilities(model, tokenizer, NAMES, emb, templates=templates)
    assert np.abs(one - both).max() > 1e-3
    per_template = [class_text_embeddings(model, tokenizer, NAMES, [t]) for t in templates]
    mean = (per_template[0] + per_template[1]) / 2
    classes = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(class_text_embeddings(model, tokenizer, NAMES, templates), classes, atol=1e-6)
    np.testing.assert_allclose(both, softmax(30.0 * emb.astype(np.float64) @ classes.T), atol=1e-5)
    # averaging logits instead of text vectors would give something else
    mean_logits = softmax(30.0 * emb @ (per_template[0] + per_template[1]).T / 2)
    assert np.abs(both - mean_logits).max() > 1e-4


def test_argument_errors_are_raised_before_any_model_call(tokenizer):
    model = clip_model()
    emb = image_embeddings(model, pixels(3))
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    model.text_model.register_forward_pre_hook(lambda *_: calls.append(1))
    bad = [
        (dict(model=tiny_bert()), "model must be a dual encoder"),
        (dict(class_names=[]), "class_names is empty"),
        (dict(class_names=["alpha", "bravo", "alpha"]), "class_names has duplicates"),
        (dict(class_names="alpha"), "class_names must be a sequence"),
        (dict(templates=["a photo of"]), "templates must be strings containing"),
        (dict(templates=[]), "templates must be a non-empty"),
        (dict(image_embeddings=np.ones((3, 5), np.float32)), "image_embeddings have width 5"),
        (dict(image_embeddings=np.ones(12, np.float32)), "image_embeddings must be a 2-D"),
        (dict(image_embeddings=np.full((2, 12), np.nan)), "image_embeddings contains NaN"),
        (dict(temperature=0.0), "temperature must be a positive"),
        (dict(processing_class=None), "processing_class"),
    ]
    for override, message in bad:
        kwargs = dict(model=model, processing_class=tokenizer, class_names=NAMES, image_embeddings=emb) | override
        with pytest.raises(ValueError, match=message):
            zero_shot_probabilities(**kwargs)
    assert calls == []
    zero_shot_probabilities(model, tokenizer, NAMES, emb)
    assert calls  # the hooks do see real calls


def two_clusters(n_per: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    truth = np.repeat([0, 1], n_per)
    return centres[truth] + 0.5 * rng.normal(size=(2 * n_per, 4)), truth


def test_prior_predicts_a_class_without_labeled_rows():
    X, truth = two_clusters()
    y = np.full(len(X), -1)
    y[[0, 3, 7]] = 0  # only class 0 is labeled
    prior = np.where(truth[:, None] == 1, [0.3, 0.7], [0.7, 0.3])
    without = LabelPropagator(n_neighbors=5).fit(X, y)
    assert without.classes_.tolist() == [0] and not (without.transduction_ == 1).any()
    model = LabelPropagator(n_neighbors=5, max_iter=1000, tol=1e-12).fit(X, y, prior=prior)
    assert model.classes_.tolist() == [0, 1] and model.label_distributions_.shape == (60, 2)
    np.testing.assert_array_equal(model.transduction_, truth)
    np.testing.assert_allclose(model.label_distributions_[[0, 3, 7]], [[1, 0]] * 3)
    # against a dense solve of (1 − α)(I − αS)⁻¹Y with Y = one-hot labels and the prior on unlabeled rows
    W = model.graph_.toarray()
    d = W.sum(axis=1)
    S = W / np.sqrt(np.outer(d, d))
    Y = prior.copy()
    Y[y >= 0] = [1, 0]
    F = np.linalg.solve(np.eye(len(X)) - model.alpha * S, Y)
    F /= F.sum(axis=1, keepdims=True)
    F[y >= 0] = [1, 0]
    np.testing.assert_allclose(model.label_distributions_, F, atol=1e-6)


def test_prior_weight_zero_matches_no_prior_and_weight_matters():
    X, truth = two_clusters(seed=1)
    y = np.full(len(X), -1)
    y[[1, 40]] = [0, 1]
    wrong = np.tile([0.05, 0.95], (len(X), 1))  # a prior that says "class 1" everywhere
    plain = LabelPropagator(n_neighbors=5).fit(X, y)
    zero = LabelPropagator(n_neighbors=5, prior_weight=0.0).fit(X, y, prior=wrong)
    np.testing.assert_array_equal(zero.transduction_, plain.transduction_)
    np.testing.assert_array_equal(zero.label_distributions_, plain.label_distributions_)
    np.testing.assert_array_equal(plain.transduction_, truth)
    heavy = LabelPropagator(n_neighbors=5, prior_weight=1.0).fit(X, y, prior=wrong)
    assert (heavy.transduction_[truth == 0] == 1).mean() > 0.5  # 29 prior rows outweigh one labeled row
    assert heavy.transduction_[1] == 0  # labeled rows keep their label
    assert LabelPropagator(prior_weight=0.5).get_params()["prior_weight"] == 0.5


def test_prior_alone_is_smoothed_over_the_graph():
    X, truth = two_clusters(seed=2)
    rng = np.random.default_rng(0)
    noisy = truth.copy()
    flipped = rng.choice(len(X), size=12, replace=False)
    noisy[flipped] = 1 - noisy[flipped]
    prior = np.where(noisy[:, None] == 1, [0.2, 0.8], [0.8, 0.2]).astype(np.float32)  # float32 sums pass
    model = LabelPropagator(n_neighbors=8).fit(X, np.full(len(X), -1), prior=torch.from_numpy(prior))
    np.testing.assert_array_equal(model.transduction_, truth)  # the flipped rows are corrected by their neighbours
    with pytest.raises(ValueError, match="no labeled rows"):
        LabelPropagator(n_neighbors=8).fit(X, np.full(len(X), -1))


def test_invalid_priors_are_rejected():
    X, _ = two_clusters(n_per=5)
    y = np.full(10, -1)
    y[0] = 1
    good = np.full((10, 2), 0.5)
    negative = good.copy()
    negative[3] = [1.5, -0.5]
    bad = [
        (good[:9], "prior must be a 2-D"),
        (good[:, 0], "prior must be a 2-D"),
        (np.where(np.eye(10, 2) > 0, np.nan, 0.5), "prior contains NaN"),
        (negative, "prior must be non-negative"),
        (np.log(good), "prior must be non-negative"),
        (good * 2, "prior rows must sum to 1"),
        (good > 0, "prior must hold real numbers"),
        (np.full((10, 1), 1.0), "prior has 1 columns"),
    ]
    for prior, message in bad:
        with pytest.raises(ValueError, match=message):
            LabelPropagator(n_neighbors=3).fit(X, y, prior=prior)
    for weight in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="prior_weight"):
            LabelPropagator(n_neighbors=3, prior_weight=weight).fit(X, y, prior=good)


def load_recipe(monkeypatch):
    """recipes/labelprop.py as a module (registered in sys.modules for its dataclasses, for this test only)."""
    spec = importlib.util.spec_from_file_location("labelprop_recipe", ROOT / "recipes" / "labelprop.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_recipe_zero_shot_prior_with_a_clip_folder(tmp_path, tokenizer, monkeypatch):
    from datasets import load_from_disk

    model = clip_model(seed=3)
    model.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    labels = np.repeat(np.arange(3), 8)
    features = Features({"pixel_values": Array3D(shape=(3, 16, 16), dtype="float32"),
                         "label": ClassLabel(names=NAMES[:3])})
    DatasetDict({"train": Dataset.from_dict({"pixel_values": pixels(24, seed=3), "label": labels},
                                            features=features)}).save_to_disk(tmp_path / "data")
    recipe = load_recipe(monkeypatch)
    out = tmp_path / "out"
    flags = ["--model_name_or_path", str(tmp_path / "clip"), "--dataset", str(tmp_path / "data"), "--output_dir",
             str(out), "--labels_per_class", "2", "--n_neighbors", "4", "--zero_shot_prior", "true",
             "--prompt_templates", "a {}", "{} echo", "--prior_weight", "0.5"]
    monkeypatch.setattr(sys, "argv", ["labelprop.py", *flags])
    recipe.main()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["zero_shot_prior"] is True and summary["prompt_templates"] == ["a {}", "{} echo"]
    assert summary["prior_weight"] == 0.5 and summary["labeled"] == 6
    exported = load_from_disk(str(out / "pseudo_labeled"))
    given = np.asarray(exported["source"]) == "given"
    y = np.where(given, np.asarray(exported["label"]), -1)
    X = image_embeddings(model, pixels(24, seed=3))
    prior = zero_shot_probabilities(model, tokenizer, NAMES[:3], X, templates=["a {}", "{} echo"])
    expected = LabelPropagator(n_neighbors=4, prior_weight=0.5).fit(X, y, prior=prior)
    np.testing.assert_array_equal(np.asarray(exported["label"]), expected.transduction_)
    np.testing.assert_allclose(exported["confidence"], expected.confidence_, atol=1e-5)

    tiny_bert().bert.save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    flags[1] = str(tmp_path / "bert")
    monkeypatch.setattr(sys, "argv", ["labelprop.py", *flags])
    with pytest.raises(SystemExit, match="needs a dual encoder"):
        recipe.main()


@pytest.mark.slow
def test_real_dinov2_and_minilm_towers_give_a_usable_prior():
    """Real towers, random projections and logit scale: checks the plumbing only, claims no accuracy."""
    from transformers import AutoTokenizer, VisionTextDualEncoderModel

    from hf_ssl import dinov2_path, load_mnist_5k, minilm_path, to_pixel_values
    from hf_ssl.data.images import image_array

    torch.manual_seed(0)
    model = VisionTextDualEncoderModel.from_vision_text_pretrained(str(dinov2_path()), str(minilm_path())).eval()
    assert type(model.vision_model).__name__ == "Dinov2Model" and type(model.text_model).__name__ == "BertModel"
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    data = load_mnist_5k().shuffle(seed=0).select(range(30))
    images = to_pixel_values(image_array(data), size=56)
    emb = encode(model, Dataset.from_dict({"pixel_values": images.numpy()}), tower="image", batch_size=10,
                 show_progress=False)
    names = data.features["label"].names
    templates = ["a photo of the number {}.", "a handwritten digit {}."]
    prior = zero_shot_probabilities(model, tokenizer, names, emb, templates=templates)
    assert prior.shape == (30, 10) and np.isfinite(prior).all()
    np.testing.assert_allclose(prior.sum(axis=1), 1.0, atol=1e-9)
    batch = tokenizer([templates[0].format(name) for name in names], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch, pixel_values=images[:4]).logits_per_image
    single = zero_shot_probabilities(model, tokenizer, names, emb[:4], templates=templates[0])
    np.testing.assert_allclose(single, torch.softmax(logits.double(), -1).numpy(), atol=1e-4)
    labels = np.asarray(data["label"])
    y = np.full(30, -1)
    for cls in np.unique(labels)[:5]:  # label one row of five classes; the others rely on the prior
        y[np.flatnonzero(labels == cls)[0]] = cls
    spread = LabelPropagator(n_neighbors=5).fit(emb, y, prior=prior)
    assert spread.classes_.tolist() == list(range(10))
    assert spread.label_distributions_.shape == (30, 10) and np.isfinite(spread.label_distributions_).all()
    np.testing.assert_allclose(spread.label_distributions_.sum(axis=1), 1.0, atol=1e-9)
    assert ((spread.transduction_ >= 0) & (spread.transduction_ < 10)).all()
    np.testing.assert_array_equal(spread.transduction_[y >= 0], y[y >= 0])
