"""What every hf_ssl trainer promises, checked once per trainer on a tiny random BERT and keyword-text pools.

- the hidden truth column is read for monitoring only: permuting it changes the reported pseudo-label accuracy and
  not a single weight;
- a run resumed from a mid-training checkpoint ends with the same weights and the same hf_ssl state as the run that
  was never interrupted;
- the method's metrics reach `TrainerCallback`s through the Trainer's own logging;
- ``save_model`` writes a model card that describes the method, its hyperparameters, pools and statistics;
- LoRA through ``peft_config=`` trains the adapter and the head only, and the saved adapter merges to the same logits.

Trainer-specific behaviour (resume at every consistency method, rounds, propagation schedules, ...) is tested in
each trainer's own file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from helpers.checks import assert_frozen_base_unchanged, assert_same_state, params
from helpers.tiny import tiny_bert
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel
from transformers import TrainerCallback

from hf_ssl import (
    ConsistencyConfig,
    ConsistencyTrainer,
    LabelPropagationConfig,
    LabelPropagationTrainer,
    SelfTrainingConfig,
    SelfTrainingTrainer,
)
from hf_ssl.data.metrics import classification_metrics

COMMON = dict(per_device_train_batch_size=4, learning_rate=1e-2, report_to="none", save_strategy="no", use_cpu=True,
              seed=0, data_seed=0, disable_tqdm=True)


@dataclass(frozen=True)
class Case:
    """One trainer: its classes, a small config, and where its run records what the contract checks.

    ``checkpoint`` is a mid-training checkpoint (under ``output_dir``) written with ``save_steps`` and
    ``checkpoint_state`` what its ``ssl_state.pt`` must hold there; ``records`` names the per-round / per-epoch
    records, ``record_key`` the field that numbers them; ``truth_accuracy`` reads the pseudo-label accuracy against
    the hidden truth from a trained trainer; ``metric`` is a method metric logged during training.
    """

    trainer: type
    config: type
    settings: dict[str, Any]
    metric: str
    records: str
    record_key: str
    truth_accuracy: Callable[[Any], float]
    checkpoint: str
    save_steps: int
    checkpoint_state: dict[str, Any] = field(default_factory=dict)


CASES = {
    "self_training": Case(
        SelfTrainingTrainer, SelfTrainingConfig,
        dict(max_rounds=1, threshold=0.4, num_train_epochs=8, logging_steps=4),
        metric="pseudo_label_loss", records="rounds", record_key="round",
        truth_accuracy=lambda t: t.rounds[0]["pseudo_labels"]["pseudo_label_accuracy"],
        checkpoint="checkpoint-27", save_steps=3, checkpoint_state={"round": 1}),
    "consistency": Case(
        ConsistencyTrainer, ConsistencyConfig,
        dict(num_train_epochs=3, threshold=0.4, threshold_momentum=0.9, logging_steps=2),
        metric="unlabeled_loss", records="epoch_records", record_key="epoch",
        truth_accuracy=lambda t: t.epoch_records[-1]["pseudo_label_accuracy"],
        checkpoint="checkpoint-4", save_steps=4,
        checkpoint_state={"consistency_method": "fixmatch", "unlabeled_batches_consumed": 4}),
    "label_propagation": Case(
        LabelPropagationTrainer, LabelPropagationConfig,
        dict(num_train_epochs=8, warmup_epochs=2, propagate_every=2, n_neighbors=5, encode_batch_size=16,
             logging_steps=4),
        metric="pseudo_label_loss", records="propagations", record_key="epoch",
        truth_accuracy=lambda t: t.propagations[-1]["pseudo_label_accuracy"],
        checkpoint="checkpoint-14", save_steps=14, checkpoint_state={"last_propagation_epoch": 4}),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


def build(case: Case, tmp_path, tokenizer, labeled, unlabeled, model=None, **kwargs: Any):
    """A ``case`` trainer over the tiny BERT (seed 0 unless ``model``), writing to ``tmp_path / "out"``;
    ``kwargs`` go to the config, except the `Trainer` arguments ``eval_dataset``, ``callbacks``, ``peft_config`` and
    ``compute_metrics`` (`classification_metrics` by default when there is an ``eval_dataset``)."""
    trainer_kwargs = {k: kwargs.pop(k) for k in ("eval_dataset", "callbacks", "peft_config", "compute_metrics")
                      if k in kwargs}
    if "eval_dataset" in trainer_kwargs:
        trainer_kwargs.setdefault("compute_metrics", classification_metrics)
    args = case.config(output_dir=str(tmp_path / "out"), **(COMMON | case.settings | kwargs))
    return case.trainer(model=tiny_bert() if model is None else model, args=args, train_dataset=labeled,
                        unlabeled_dataset=unlabeled, processing_class=tokenizer, **trainer_kwargs)


def test_hidden_truth_is_monitored_but_never_reaches_a_loss(case, tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    permuted = unlabeled.remove_columns("ssl_truth").add_column(
        "ssl_truth", np.random.default_rng(0).permutation(unlabeled["ssl_truth"]).tolist())
    trained, accuracy = [], []
    for pool in (unlabeled, permuted):
        trainer = build(case, tmp_path, tokenizer, labeled, pool)
        trainer.train()
        assert trainer.unlabeled_batches_consumed > 0  # the unlabeled pool did reach the loss
        trained.append(params(trainer.model))
        accuracy.append(case.truth_accuracy(trainer))
    assert accuracy[0] != accuracy[1]  # the truth column was read...
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])  # ...and trained on by nothing


def test_resume_mid_training_is_exact(case, tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    settings = dict(save_strategy="steps", save_steps=case.save_steps, save_total_limit=None, full_determinism=True)
    first = build(case, tmp_path, tokenizer, labeled, unlabeled, **settings)
    first.train()
    checkpoint = tmp_path / "out" / case.checkpoint
    assert (checkpoint / "ssl_state.pt").exists() and (checkpoint / "README.md").exists()
    state = torch.load(checkpoint / "ssl_state.pt", weights_only=True)
    assert state["method"] == case.trainer.method_name
    assert {k: state[k] for k in case.checkpoint_state} == case.checkpoint_state
    resumed = build(case, tmp_path, tokenizer, labeled, unlabeled, model=tiny_bert(seed=5), **settings)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    a, b = params(first.model), params(resumed.model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    numbers = [[r[case.record_key] for r in getattr(t, case.records)] for t in (first, resumed)]
    assert numbers[0] == numbers[1] and len(numbers[0]) > 1
    assert_same_state(first.ssl_state_dict(), resumed.ssl_state_dict())


class Recorder(TrainerCallback):
    def __init__(self):
        self.logs, self.events = [], []

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append("begin")

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append("end")

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_method_metrics_reach_callbacks(case, tmp_path, pools, tokenizer):
    labeled, unlabeled, _ = pools
    recorder = Recorder()
    trainer = build(case, tmp_path, tokenizer, labeled, unlabeled, callbacks=[recorder])
    trainer.train()
    logged = [log[case.metric] for log in recorder.logs if case.metric in log]
    assert logged and all(np.isfinite(logged))
    assert any(case.metric in entry for entry in trainer.state.log_history)
    assert recorder.events and recorder.events == ["begin", "end"] * (len(recorder.events) // 2)


def test_save_model_writes_the_model_card(case, tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    trainer = build(case, tmp_path, tokenizer, labeled, unlabeled, eval_dataset=evaluation)
    trainer.train()
    accuracy = trainer.evaluate()["eval_accuracy"]
    trainer.save_model()
    folder = tmp_path / "out"
    assert (folder / "model.safetensors").exists()
    card = ModelCard.load(folder / "README.md")
    data, text, info = card.data.to_dict(), card.text, trainer.method_info()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert {"hf_ssl", "semi-supervised", info.name, *info.tags} <= set(data["tags"])
    assert data["model-index"][0]["results"][0]["metrics"][0] == {"type": "accuracy", "value": accuracy}
    assert f"**{info.title}**" in text and info.description in text and info.paper["title"] in text
    hyperparameters = trainer.card_hyperparameters()
    assert len(hyperparameters) > 7  # the shared ones and the method's own
    for key, value in hyperparameters.items():
        assert f"- `{key}`: {value}\n" in text, key
    assert f"- labeled examples: {len(labeled)}\n" in text and f"- unlabeled examples: {len(unlabeled)}\n" in text
    header, rows = trainer.card_statistics()
    assert rows and f"| {' | '.join(header)} |" in text
    assert f"| {' | '.join(map(str, rows[-1]))} |" in text


def test_lora_trains_adapter_and_head_and_merges_identically(case, tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    base_before = params(tiny_bert())
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    trainer = build(case, tmp_path, tokenizer, labeled, unlabeled, peft_config=lora)
    trainer.train()
    trained = dict(trainer.model.named_parameters())
    trainable = {k for k, v in trained.items() if v.requires_grad}
    assert any("lora_" in k for k in trainable) and any("classifier" in k for k in trainable)
    assert all("lora_" in k or "classifier" in k for k in trainable), trainable
    assert_frozen_base_unchanged(trained, base_before)
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)  # B starts at zero: it trained
    trainer.save_model()
    folder = tmp_path / "out"
    assert (folder / "adapter_model.safetensors").exists() and (folder / "adapter_config.json").exists()
    assert not (folder / "model.safetensors").exists()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and "PEFT adapter" in card.text
    trainer.model.eval()
    batch = tokenizer(evaluation["text"][:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = trainer.model(**batch).logits
        merged = PeftModel.from_pretrained(tiny_bert(), str(folder)).merge_and_unload().eval()
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-5)
