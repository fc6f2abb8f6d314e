"""PEFT: LoRA through `peft_config=`, head kept trainable, adapter saved, reloaded and merged identically."""

from __future__ import annotations

import pytest
import torch
from helpers.checks import assert_frozen_base_unchanged
from helpers.tiny import tiny_bert
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer


def test_peft_config_with_unknown_target_modules(tmp_path, pools):
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "x"), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match=r"target_modules \['q_proj'\].*query"):
        SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                            peft_config=LoraConfig(r=4, target_modules=["q_proj"]))


@pytest.mark.slow
def test_lora_on_real_minilm_with_label_propagation_merges_identically(tmp_path):
    """LoRA on the packaged all-MiniLM-L6-v2 through `LabelPropagationTrainer`: propagation embeds the pools with
    the adapted model, only LoRA and head weights move, and the saved adapter merges to the same logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_ssl import LabelPropagationConfig, LabelPropagationTrainer, load_text_dataset, minilm_path, sample_per_class

    raw = load_text_dataset("reuters-r8")
    names = raw["train"].features["label"].names
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    labeled, unlabeled = sample_per_class(raw["train"], 2, seed=0, max_unlabeled=40)
    labeled, unlabeled = (d.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32), batched=True,
                                remove_columns=["text"]) for d in (labeled, unlabeled))

    def new_model():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_pretrained(
            minilm_path(), num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)})

    base_before = {k: v.clone() for k, v in new_model().named_parameters()}
    args = LabelPropagationConfig(output_dir=str(tmp_path / "lp"), warmup_epochs=1, propagate_every=1,
                                  num_train_epochs=3, per_device_train_batch_size=8, learning_rate=5e-3,
                                  report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    trainer = LabelPropagationTrainer(model=new_model(), args=args, train_dataset=labeled,
                                      unlabeled_dataset=unlabeled, processing_class=tokenizer, peft_config=lora)
    trainer.train()
    assert [r["epoch"] for r in trainer.propagations] == [1, 2] and trainer.propagations[0]["pseudo_labeled"] > 0
    trained = dict(trainer.model.named_parameters())
    moved = {k for k, v in trained.items() if v.requires_grad}
    assert any("lora_B" in k for k in moved) and any("classifier" in k for k in moved)
    assert_frozen_base_unchanged(trained, base_before)
    lora_b = [v for k, v in trained.items() if "lora_B" in k]
    assert any(v.abs().max() > 0 for v in lora_b)  # LoRA's B starts at zero: the adapter really trained
    trainer.save_model()
    folder = tmp_path / "lp"
    assert (folder / "adapter_model.safetensors").exists() and not (folder / "model.safetensors").exists()
    assert ModelCard.load(folder / "README.md").data.library_name == "peft"
    trainer.model.eval()
    batch = tokenizer(raw["test"]["text"][:8], truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = trainer.model(**batch).logits
        merged = PeftModel.from_pretrained(new_model(), str(folder)).merge_and_unload().eval()
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-4)
