"""ConsistencyTrainer on tiny random BERT / ViT models built in the tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import concatenate_datasets
from helpers.tiny import tiny_bert
from transformers import ViTConfig, ViTForImageClassification

from hf_ssl import ConsistencyConfig, ConsistencyTrainer, LabelPropagator, encode
from hf_ssl.data.metrics import classification_metrics
from hf_ssl.methods.thresholds import THRESHOLD_STRATEGIES
from hf_ssl.trainer.consistency_callbacks import slow_momentum_warnings
from hf_ssl.trainer.consistency_config import METHODS


def config(tmp_path, **overrides) -> ConsistencyConfig:
    values = dict(output_dir=str(tmp_path / "cons"), num_train_epochs=3, per_device_train_batch_size=4,
                  learning_rate=1e-2, logging_steps=2, report_to="none", save_strategy="no", use_cpu=True,
                  seed=0, data_seed=0, threshold_momentum=0.9)
    values.update(overrides)
    return ConsistencyConfig(**values)


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("strategy", THRESHOLD_STRATEGIES)
def test_every_method_and_threshold_trains(tmp_path, pools, tokenizer, method, strategy):
    labeled, unlabeled, _ = pools
    model = tiny_bert()
    before = params(model)
    if method == "mixmatch" and strategy != "fixed":  # MixMatch has no adaptive threshold: rejected at config time
        with pytest.raises(ValueError, match="threshold_strategy='fixed'"):
            config(tmp_path, method=method, threshold_strategy=strategy)
        return
    trainer = ConsistencyTrainer(model=model, args=config(tmp_path, method=method, threshold_strategy=strategy,
                                                          threshold=0.5 if method in ("fixmatch", "uda") else None),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    after = params(trainer.model)
    assert all(not torch.equal(before[k], after[k]) for k in before), [k for k in before if torch.equal(before[k],
                                                                                                         after[k])]
    logged = [e for e in trainer.state.log_history if "mask_rate" in e]
    assert logged and all(np.isfinite(e["unlabeled_loss"]) and 0 <= e["mask_rate"] <= 1 for e in logged)
    assert trainer.epoch_records and len(trainer.epoch_records) == 3
    assert trainer.unlabeled_batches_consumed == trainer.state.global_step


def test_fixmatch_learns_the_keyword_task(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, num_train_epochs=25, threshold=0.6),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, eval_dataset=evaluation,
                                 processing_class=tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    assert trainer.evaluate()["eval_accuracy"] > 0.6
    records = trainer.epoch_records
    assert records[-1]["mask_rate"] > 0
    assert "pseudo_label_accuracy" in records[-1]


def test_image_model_trains(tmp_path):
    from datasets import Dataset

    from hf_ssl import sample_per_class

    torch.manual_seed(0)
    n = 40
    labels = np.arange(n) % 2
    pixels = np.random.default_rng(0).normal(size=(n, 3, 16, 16)).astype(np.float32)
    pixels[labels == 1, :, :8] += 1.0
    pool = Dataset.from_dict({"pixel_values": pixels.tolist(), "label": labels.tolist()})
    labeled, unlabeled = sample_per_class(pool, k=4, seed=0)
    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=32, num_labels=2))
    for method in ("fixmatch", "mixmatch"):
        trainer = ConsistencyTrainer(model=vit, args=config(tmp_path, method=method, threshold=0.5,
                                                            randaugment_n=1),
                                     train_dataset=labeled, unlabeled_dataset=unlabeled)
        trainer.train()
        assert trainer.state.global_step == 6


@pytest.mark.parametrize("overrides", [
    dict(method="fixmatch", threshold_strategy="flexmatch", threshold=0.5, use_ema_teacher=True,
         distribution_alignment=True, augment_in="step"),
    dict(method="mixmatch", eval_with_ema=True),
    dict(method="uda", threshold_strategy="softmatch", augment_in="collator", weak_augment="token_dropout"),
    dict(method="fixmatch", threshold_strategy="freematch", graph_prior_weight=0.5, graph_prior_every=1,
         n_neighbors=3),
])
def test_resume_mid_training_is_exact(tmp_path, pools, tokenizer, overrides):
    labeled, unlabeled, _ = pools
    args = config(tmp_path, save_strategy="steps", save_steps=4, save_total_limit=None, full_determinism=True,
                  **overrides)
    first = ConsistencyTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                               processing_class=tokenizer)
    first.train()
    checkpoint = tmp_path / "cons" / "checkpoint-4"
    state = torch.load(checkpoint / "ssl_state.pt", weights_only=True)
    assert state["method"] == "consistency" and state["consistency_method"] == overrides["method"]
    assert state["unlabeled_batches_consumed"] == 4
    resumed = ConsistencyTrainer(model=tiny_bert(seed=3), args=args, train_dataset=labeled,
                                 unlabeled_dataset=unlabeled, processing_class=tokenizer)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    a, b = params(first.model), params(resumed.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert first.masker.state_dict().keys() == resumed.masker.state_dict().keys()
    for key, value in first.masker.state_dict().items():
        if key != "strategy":
            assert torch.allclose(value.float(), resumed.masker.state_dict()[key].float(), atol=1e-6)
    if first.ema is not None:
        assert all(torch.allclose(first.ema.shadow[k], resumed.ema.shadow[k], atol=1e-6) for k in first.ema.shadow)
    assert [r["epoch"] for r in resumed.epoch_records] == [r["epoch"] for r in first.epoch_records]
    assert resumed.graph_records == first.graph_records


def test_graph_prior_is_built_before_training_and_sets_the_targets(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    masks = {}
    for weight in (0.0, 1.0):
        trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, num_train_epochs=1, threshold=0.99,
                                                                    graph_prior_weight=weight, n_neighbors=3),
                                     train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
        trainer.train()
        masks[weight] = trainer.epoch_records[0]["mask_rate"]
        if weight:
            assert trainer.graph_labels.shape == (len(unlabeled),) and trainer.graph_labels.min() >= 0
            assert [r["epoch"] for r in trainer.graph_records] == [0]
            graph_accuracy = (trainer.graph_labels.numpy() == np.asarray(unlabeled["ssl_truth"])).mean()
            assert trainer.graph_records[0]["graph_accuracy"] == pytest.approx(graph_accuracy)
            trainer.create_model_card()
            assert "- `graph_prior_weight`: 1.0" in (tmp_path / "cons" / "README.md").read_text()
        else:
            assert trainer.graph_labels is None and not trainer.graph_records
    # with weight 1 every target is the graph's class (confidence 1, all rows pass tau 0.99); a fresh model
    # passes almost none on its own
    assert masks[1.0] == 1.0 and masks[0.0] < 0.5


def test_graph_embedding_layer_picks_the_hidden_state_the_graph_spreads_over(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, graph_prior_weight=0.5, n_neighbors=3,
                                                                embedding_layer=1, pooling="mean"),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    columns = trainer.model_input_columns(labeled)
    data = concatenate_datasets([d.select_columns(columns) for d in (labeled, unlabeled)])
    y = np.concatenate([np.asarray(labeled["label"]), np.full(len(unlabeled), -1)])
    expected = {layer: LabelPropagator(n_neighbors=3, random_state=trainer.args.seed).fit(
        encode(trainer.model, data, tokenizer, pooling="mean", layer=layer, show_progress=False), y).transduction_
        for layer in (1, None)}
    got = trainer.spread_labels().transduction_
    np.testing.assert_array_equal(got, expected[1])
    assert not np.array_equal(expected[1], expected[None])  # else this test could not tell the layers apart
    with pytest.raises(ValueError, match="embedding_layer"):
        config(tmp_path, graph_prior_weight=0.5, embedding_layer=1, pooling="pooler")


def test_eval_with_ema_uses_the_teacher_and_card_lists_the_method(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, method="mean_teacher", eval_with_ema=True,
                                                                ema_decay=0.9),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, eval_dataset=evaluation,
                                 processing_class=tokenizer, compute_metrics=classification_metrics)
    trainer.train()
    with_ema = trainer.evaluate()["eval_loss"]
    trainer.args.eval_with_ema = False
    student = trainer.evaluate()["eval_loss"]
    with trainer.ema.swapped_in(trainer.model):
        manual = trainer.evaluate()["eval_loss"]
    assert with_ema == pytest.approx(manual) and with_ema != pytest.approx(student)
    trainer.save_model()
    from huggingface_hub import ModelCard

    card = ModelCard.load(str(tmp_path / "cons" / "README.md"))
    assert {"hf_ssl", "mean_teacher", "consistency-regularization"} <= set(card.data.tags)
    assert "Mean teachers are better role models" in card.text
    assert "mask rate" in card.text and "| 3 |" in card.text.replace("3.0", "3")


@pytest.mark.parametrize("decay,warns", [(0.999, True), (0.5, False)])
def test_ema_decay_too_slow_for_the_run_warns(tmp_path, pools, tokenizer, caplog, decay, warns):
    labeled, unlabeled, _ = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, num_train_epochs=1, use_ema_teacher=True,
                                                                ema_decay=decay),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    with caplog.at_level("WARNING"):
        trainer.train()
    assert ("ema_decay=0.999 over 3 steps" in caplog.text) is warns


def test_slow_momenta_are_named_only_for_the_estimates_in_use(tmp_path):
    fixed = config(tmp_path, threshold_strategy="fixed", threshold_momentum=0.999, alignment_momentum=0.999)
    assert slow_momentum_warnings(fixed, 300) == []
    adaptive = config(tmp_path, threshold_strategy="freematch", threshold_momentum=0.999,
                      distribution_alignment=True, alignment_momentum=0.999)
    names = [w.split("=")[0] for w in slow_momentum_warnings(adaptive, 300)]
    assert names == ["threshold_momentum", "alignment_momentum"]
    assert "74%" in slow_momentum_warnings(adaptive, 300)[0]  # 0.999 ** 300
    assert slow_momentum_warnings(adaptive, 5000) == []  # 0.999 ** 5000 < 1%
    assert slow_momentum_warnings(config(tmp_path, method="mean_teacher", ema_decay=0.99), 300) == []


def test_peft_lora_with_ema_teacher_tracks_trainable_parameters(tmp_path, pools, tokenizer):
    from peft import LoraConfig

    labeled, unlabeled, _ = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, method="mean_teacher"),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer,
                                 peft_config=LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"],
                                                        task_type="SEQ_CLS"))
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(trainer.ema.shadow) == trainable
    assert any("lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "cons" / "adapter_model.safetensors").exists()


def test_remove_unused_columns_keeps_the_row_index_and_strong_views(tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    strong = unlabeled.map(lambda row: {"strong_input_ids": row["input_ids"][::-1][:4] + [3],
                                        "strong_attention_mask": [1] * 5})
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, threshold_strategy="flexmatch", threshold=0.4,
                                                                remove_unused_columns=True),
                                 train_dataset=labeled.add_column("junk", ["x"] * len(labeled)),
                                 unlabeled_dataset=strong, processing_class=tokenizer)
    trainer.train()
    assert (trainer.masker.state["row_class"] >= 0).any()
    batch = trainer.next_unlabeled_batch()  # augment_in="auto" on CPU: the collator made the views
    assert batch["strong"]["input_ids"].shape[1] == 5  # the precomputed strong view, not an augmented one


@pytest.mark.parametrize("placement,expected", [("auto", "collator"), ("step", "step"), ("collator", "collator")])
def test_augment_in_auto_augments_in_the_collator_on_cpu(tmp_path, pools, tokenizer, placement, expected):
    labeled, unlabeled, _ = pools
    trainer = ConsistencyTrainer(model=tiny_bert(), args=config(tmp_path, augment_in=placement),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    assert trainer.augment_in == expected
    batch = trainer.next_unlabeled_batch()
    # Views are made by the stream's collator only when augmenting there; otherwise in the step.
    assert ("weak" in batch) == (expected == "collator")
