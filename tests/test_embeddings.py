"""hf_ssl.encode: pooling, order under length sorting, normalisation, cache, image and dual encoders, multi-process."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers.mp_launch import HELPERS, launch
from helpers.tiny import WORDS, text_pool, tiny_bert, variable_texts
from transformers import (
    BertConfig,
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    Dinov2Config,
    Dinov2Model,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    ViTConfig,
    ViTForImageClassification,
)

from hf_ssl import encode

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
VOCAB = len(WORDS) + 5


def count_calls(module: torch.nn.Module) -> list[int]:
    """A one-element list counting forward calls of ``module``; records each batch's width in calls[1:]."""
    calls = [0]

    def hook(_module, args, kwargs, _output):
        calls[0] += 1
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            calls.append(int(ids.shape[1]))

    module.register_forward_hook(hook, with_kwargs=True)
    return calls


def manual(model, tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Mean, CLS and pooler outputs of the BERT body, one text at a time (no padding at all)."""
    out: dict[str, list] = {"mean": [], "cls": [], "pooler": []}
    model.eval()
    with torch.no_grad():
        for text in texts:
            output = model.bert(**tokenizer(text, truncation=True, max_length=16, return_tensors="pt"))
            out["mean"].append(output.last_hidden_state[0].mean(0).numpy())
            out["cls"].append(output.last_hidden_state[0, 0].numpy())
            out["pooler"].append(output.pooler_output[0].numpy())
    return {k: np.stack(v) for k, v in out.items()}


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_length_sorted_batches_keep_the_original_order(tokenizer):
    texts = variable_texts(23)
    model = tiny_bert()
    calls = count_calls(model.bert)
    batched = encode(model, Dataset.from_dict({"text": texts}), tokenizer, batch_size=4, max_length=16,
                     show_progress=False)
    widths = calls[1:]
    assert calls[0] == 6 and widths == sorted(widths, reverse=True) and widths[0] > widths[-1]  # dynamic padding
    one_by_one = np.concatenate([encode(model, Dataset.from_dict({"text": [t]}), tokenizer, max_length=16,
                                        show_progress=False) for t in texts])
    assert batched.shape == (23, 16) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(batched, unit(manual(model, tokenizer, texts)["mean"]), atol=1e-5)


def test_mean_cls_pooler_match_manual_computation(tokenizer):
    texts = variable_texts(10, seed=1)
    model = tiny_bert(seed=2)
    expected = manual(model, tokenizer, texts)
    data = Dataset.from_dict({"text": texts})
    got = {p: encode(model, data, tokenizer, pooling=p, normalize=False, batch_size=3, max_length=16,
                     show_progress=False) for p in ("mean", "cls", "pooler")}
    for pooling, array in got.items():
        np.testing.assert_allclose(array, expected[pooling], atol=1e-5)
    assert not np.allclose(got["mean"], got["cls"], atol=1e-3)
    np.testing.assert_array_equal(encode(model, data, tokenizer, normalize=False, batch_size=3, max_length=16,
                                         show_progress=False), got["mean"])  # auto = mean for text
    model.train()
    encode(model, data, tokenizer, show_progress=False)
    assert model.training


def test_peft_wrapped_classifier_encodes_with_its_adapters(tokenizer):
    from peft import LoraConfig, get_peft_model

    texts = variable_texts(20)
    base = tiny_bert(seed=3).eval()
    plain = encode(base.bert, texts, tokenizer, show_progress=False)
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"], task_type="SEQ_CLS")
    peft_model = get_peft_model(tiny_bert(seed=3), lora).eval()
    np.testing.assert_allclose(encode(peft_model, texts, tokenizer, show_progress=False), plain, atol=1e-6)
    with torch.no_grad():  # a trained adapter changes the embeddings: they come from the adapted encoder
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    assert np.abs(encode(peft_model, texts, tokenizer, show_progress=False) - plain).max() > 1e-3


def test_normalisation_gives_unit_norms(tokenizer):
    data = Dataset.from_dict({"text": variable_texts(12)})
    model = tiny_bert()
    normed = encode(model, data, tokenizer, show_progress=False)
    raw = encode(model, data, tokenizer, normalize=False, show_progress=False)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-2)
    np.testing.assert_allclose(normed, unit(raw), atol=1e-6)


def test_pretokenized_columns_and_stored_padding(tokenizer):
    model = tiny_bert()
    pool = text_pool(tokenizer, 15)  # text + input_ids + token_type_ids + attention_mask
    from_text = encode(model, pool.select_columns(["text"]), tokenizer, max_length=16, show_progress=False)
    from_ids = encode(model, pool, show_progress=False)  # no tokenizer needed
    padded = pool.remove_columns(["input_ids", "token_type_ids", "attention_mask"]).map(
        lambda b: tokenizer(b["text"], padding="max_length", max_length=16), batched=True)
    from_padded = encode(model, padded, batch_size=4, show_progress=False)
    np.testing.assert_allclose(from_ids, from_text, atol=1e-6)
    np.testing.assert_allclose(from_padded, from_text, atol=1e-5)


def test_cache_hit_skips_the_model(tokenizer, tmp_path):
    data = Dataset.from_dict({"text": variable_texts(20)})
    model = tiny_bert()
    calls = count_calls(model.bert)
    first = encode(model, data, tokenizer, batch_size=8, cache_dir=tmp_path, show_progress=False)
    assert calls[0] == 3 and len(list(tmp_path.glob("*.npy"))) == 1
    again = encode(model, data, tokenizer, batch_size=8, cache_dir=tmp_path, show_progress=False)
    assert calls[0] == 3
    np.testing.assert_array_equal(first, again)
    encode(model, data, tokenizer, pooling="cls", cache_dir=tmp_path, show_progress=False)  # other settings: miss
    assert calls[0] == 4
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight.mul_(1.5)  # other weights: miss
    changed = encode(model, data, tokenizer, batch_size=8, cache_dir=tmp_path, show_progress=False)
    assert calls[0] == 7 and not np.allclose(changed, first)
    encode(model, data.select(range(10)), tokenizer, cache_dir=tmp_path, show_progress=False)  # other rows: miss
    assert calls[0] == 8
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npy"] * 4  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {0o666 & ~umask}


def tiny_clip(seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    text = CLIPTextConfig(vocab_size=VOCAB, max_position_embeddings=32, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3, **TINY)
    vision = CLIPVisionConfig(image_size=16, patch_size=8, **TINY)
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=8))


def pixels(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def test_clip_image_and_text_towers(tokenizer):
    model = tiny_clip().eval()
    images = pixels(7)
    texts = variable_texts(9)
    image_emb = encode(model, Dataset.from_dict({"pixel_values": images}), batch_size=3, show_progress=False)
    text_emb = encode(model, Dataset.from_dict({"text": texts}), tokenizer, batch_size=4, show_progress=False)
    assert image_emb.shape == (7, 8) and text_emb.shape == (9, 8)
    with torch.no_grad():
        features = model.get_image_features(pixel_values=torch.from_numpy(images))
        expected = getattr(features, "pooler_output", features).numpy()
        ids = tokenizer(texts[2], return_tensors="pt")
        text_expected = getattr(model.get_text_features(**ids), "pooler_output", None)
    np.testing.assert_allclose(image_emb, unit(expected), atol=1e-5)
    np.testing.assert_allclose(text_emb[2], unit(text_expected.numpy())[0], atol=1e-5)
    both = Dataset.from_dict({"pixel_values": images[:2], "text": texts[:2]})
    with pytest.raises(ValueError, match="tower"):
        encode(model, both, tokenizer, show_progress=False)
    np.testing.assert_allclose(encode(model, both, tokenizer, tower="image", show_progress=False), image_emb[:2],
                               atol=1e-6)
    with pytest.raises(ValueError, match="projected"):
        encode(model, both, tokenizer, tower="text", pooling="mean", show_progress=False)


def test_vision_text_dual_encoder_towers(tokenizer):
    torch.manual_seed(0)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        ViTConfig(image_size=16, patch_size=8, **TINY),
        BertConfig(vocab_size=VOCAB, max_position_embeddings=32, **TINY), projection_dim=6)
    model = VisionTextDualEncoderModel(config)
    data = Dataset.from_dict({"pixel_values": pixels(5), "text": variable_texts(5)})
    image_emb = encode(model, data, tokenizer, tower="image", show_progress=False)
    text_emb = encode(model, data, tokenizer, tower="text", batch_size=2, show_progress=False)
    assert image_emb.shape == (5, 6) and text_emb.shape == (5, 6)
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(image_emb, text_emb)


def test_vit_and_dinov2_pooling():
    torch.manual_seed(0)
    dino = Dinov2Model(Dinov2Config(image_size=16, patch_size=8, **TINY)).eval()
    data = Dataset.from_dict({"pixel_values": pixels(6)})
    cls = encode(dino, data, pooling="cls", normalize=False, batch_size=4, show_progress=False)
    pooler = encode(dino, data, pooling="pooler", normalize=False, show_progress=False)
    np.testing.assert_allclose(cls, pooler, atol=1e-6)  # Dinov2's pooler output is its (layer-normed) CLS token
    with torch.no_grad():
        hidden = dino(pixel_values=torch.from_numpy(pixels(6))).last_hidden_state.numpy()
    np.testing.assert_allclose(cls, hidden[:, 0], atol=1e-5)
    mean = encode(dino, data, pooling="mean", normalize=False, show_progress=False)
    np.testing.assert_allclose(mean, hidden.mean(1), atol=1e-5)
    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, num_labels=3, **TINY)).eval()
    auto = encode(vit, data, show_progress=False)  # base model (vit), auto = CLS
    with torch.no_grad():
        vit_cls = vit.vit(pixel_values=torch.from_numpy(pixels(6))).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(auto, unit(vit_cls), atol=1e-5)


def test_layer_pools_that_hidden_state_for_text_and_images(tokenizer, tmp_path):
    texts = variable_texts(8, seed=3)
    model = tiny_bert(seed=4).eval()
    data = Dataset.from_dict({"text": texts})
    with torch.no_grad():
        states = [model.bert(**tokenizer(t, truncation=True, max_length=16, return_tensors="pt"),
                             output_hidden_states=True).hidden_states for t in texts]
    for layer in (0, 1, -1):
        got = encode(model, data, tokenizer, pooling="mean", normalize=False, batch_size=3, max_length=16,
                     layer=layer, show_progress=False)
        np.testing.assert_allclose(got, np.stack([h[layer][0].mean(0).numpy() for h in states]), atol=1e-5)
    first = encode(model, data, tokenizer, pooling="cls", normalize=False, max_length=16, layer=1, show_progress=False)
    np.testing.assert_allclose(first, np.stack([h[1][0, 0].numpy() for h in states]), atol=1e-5)
    cached = encode(model, data, tokenizer, max_length=16, layer=1, cache_dir=tmp_path, show_progress=False)
    last = encode(model, data, tokenizer, max_length=16, cache_dir=tmp_path, show_progress=False)
    assert not np.allclose(cached, last, atol=1e-3)  # the layer is part of the cache key
    assert len(list(tmp_path.glob("embeddings-*.npy"))) == 2

    torch.manual_seed(0)
    dino = Dinov2Model(Dinov2Config(image_size=16, patch_size=8, **TINY)).eval()
    images = Dataset.from_dict({"pixel_values": pixels(5)})
    with torch.no_grad():
        hidden = dino(pixel_values=torch.from_numpy(pixels(5)), output_hidden_states=True).hidden_states
    got = encode(dino, images, pooling="cls", normalize=False, layer=-2, show_progress=False)
    np.testing.assert_allclose(got, hidden[-2][:, 0].numpy(), atol=1e-5)  # layer 1 of 2, before the final norm
    with pytest.raises(ValueError, match="out of range"):
        encode(dino, images, layer=3, show_progress=False)
    with pytest.raises(ValueError, match="pooling='mean', 'cls' or 'auto'"):
        encode(dino, images, pooling="pooler", layer=1, show_progress=False)
    with pytest.raises(ValueError, match="integer"):
        encode(dino, images, layer=1.5, show_progress=False)


def test_image_column_through_an_image_processor():
    Image = pytest.importorskip("PIL.Image", reason="decoding an image column needs Pillow")
    from datasets import Image as ImageFeature
    from transformers import ViTImageProcessor

    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, num_labels=3, **TINY))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)) for i in range(5)]
    data = Dataset.from_dict({"image": images}).cast_column("image", ImageFeature())
    processor = ViTImageProcessor(size={"height": 16, "width": 16})
    got = encode(vit, data, processor, image_column="image", batch_size=2, show_progress=False)
    expected = encode(vit, Dataset.from_dict({"pixel_values": processor(images=images)["pixel_values"]}),
                      show_progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="image processor"):
        encode(vit, data, image_column="image", show_progress=False)


def test_argument_errors(tokenizer):
    model = tiny_bert()
    data = Dataset.from_dict({"text": ["alpha bravo"]})
    with pytest.raises(ValueError, match="pooling"):
        encode(model, data, tokenizer, pooling="max", show_progress=False)
    with pytest.raises(ValueError, match="tower"):
        encode(model, data, tokenizer, tower="text", show_progress=False)
    with pytest.raises(ValueError, match="processing_class"):
        encode(model, data, show_progress=False)
    with pytest.raises(ValueError, match="empty"):
        encode(model, data.select([]), tokenizer, show_progress=False)
    assert encode(model, ["alpha", "bravo charlie"], tokenizer, show_progress=False).shape == (2, 16)


@pytest.mark.slow
def test_two_processes_return_every_row_in_order(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    # 2 gloo processes (see tests/helpers/mp_launch.py); the script's Accelerator(cpu=True) keeps them on CPU
    launch(HELPERS / "mp_encode_script.py", [str(tmp_path / "tok"), str(tmp_path), "37"], nproc=2, timeout=300)
    single = encode(tiny_bert(seed=0), Dataset.from_dict({"text": variable_texts(37)}), tokenizer, batch_size=4,
                    max_length=16, show_progress=False)
    for rank in range(2):
        info = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert info["num_processes"] == 2 and info["forward_calls_on_cache_hit"] == 0
        assert info["forward_calls"] == 3 * 5  # three encodes of a 19- or 18-row shard in batches of 4
        got = np.load(tmp_path / f"rank{rank}.npy")
        assert got.shape == single.shape == (37, 16)
        np.testing.assert_allclose(got, single, atol=1e-5)


@pytest.mark.slow
def test_minilm_embeddings_put_same_label_texts_together():
    from transformers import AutoModel, AutoTokenizer

    from hf_ssl import load_text_dataset, minilm_path

    texts = load_text_dataset("reuters-r8")["test"].shuffle(seed=0).select(range(50))
    model = AutoModel.from_pretrained(minilm_path())
    emb = encode(model, texts, AutoTokenizer.from_pretrained(minilm_path()), show_progress=False)
    assert emb.shape == (50, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    labels = np.asarray(texts["label"])
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    nn_agreement = float((labels[sims.argmax(1)] == labels).mean())
    chance = float(((np.bincount(labels) / len(labels)) ** 2).sum())
    print(f"nearest-neighbour label agreement {nn_agreement:.2f}, chance {chance:.2f}")
    assert nn_agreement > 0.5 and nn_agreement > chance + 0.2
