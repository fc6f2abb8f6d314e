"""PEFT: LoRA through `peft_config=`, head kept trainable, adapter saved, reloaded and merged identically."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_bert
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer


def test_lora_self_training_saves_adapter_that_merges_identically(tmp_path, pools, tokenizer):
    labeled, unlabeled, evaluation = pools
    base_before = {k: v.clone() for k, v in tiny_bert().named_parameters()}
    args = SelfTrainingConfig(output_dir=str(tmp_path / "lora"), max_rounds=1, threshold=0.4, num_train_epochs=8,
                              per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
                              save_strategy="no", use_cpu=True, seed=0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer, peft_config=lora)
    trainer.train()
    trained = dict(trainer.model.named_parameters())
    trainable = {k for k, v in trained.items() if v.requires_grad}
    assert any("lora_" in k for k in trainable) and any("classifier" in k for k in trainable)
    for name, value in trained.items():
        if not value.requires_grad and "lora_" not in name and "modules_to_save" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            if key in base_before:
                assert torch.equal(value, base_before[key]), f"frozen {name} changed"
    trainer.save_model()
    folder = tmp_path / "lora"
    assert (folder / "adapter_model.safetensors").exists() and (folder / "adapter_config.json").exists()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and "PEFT adapter" in card.text
    trainer.model.eval()
    batch = tokenizer(evaluation["text"][:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = trainer.model(**batch).logits
        merged = PeftModel.from_pretrained(tiny_bert(), str(folder)).merge_and_unload().eval()
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-5)


def test_peft_config_with_unknown_target_modules(tmp_path, pools):
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "x"), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match=r"target_modules \['q_proj'\].*query"):
        SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                            peft_config=LoraConfig(r=4, target_modules=["q_proj"]))
