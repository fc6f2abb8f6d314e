"""Self-training on text: labeled-only fine-tuning vs self-training, then save model, tokenizer and card.

Runs offline on its defaults (the packaged all-MiniLM-L6-v2 and Reuters R8, 5 labels per class):

    python recipes/text_selftrain.py
    accelerate launch recipes/text_selftrain.py --max_unlabeled -1        # the whole unlabeled pool
    python recipes/text_selftrain.py --config my.yaml --threshold 0.95
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from datasets import load_from_disk
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer, load_text_dataset, minilm_path, sample_per_class
from hf_ssl.cli import parse_args
from hf_ssl.metrics import classification_metrics


@dataclass
class ScriptArguments:
    """What to train on.

    Args:
        model_name_or_path: model folder or Hub id (default: the packaged all-MiniLM-L6-v2).
        dataset: a packaged corpus (reuters-r8, reuters-r52, 20newsgroups) or a `save_to_disk` folder
            with train and test splits.
        text_column: text column.
        label_column: label column (a ClassLabel).
        labels_per_class: labeled examples sampled per class from the train split.
        max_unlabeled: subsample the unlabeled pool (-1: all of it).
        max_eval: subsample the test split (-1: all of it).
        max_length: tokenizer truncation length.
        trust_remote_code: allow custom model code (off by default).
        use_peft: train a LoRA adapter (plus the classification head) instead of all weights.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling.
        lora_target_modules: modules to adapt (BERT-family: query, key, value, dense).
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Default: packaged all-MiniLM-L6-v2."})
    dataset: str = field(default="reuters-r8", metadata={"help": "Packaged corpus name or save_to_disk folder."})
    text_column: str = "text"
    label_column: str = "label"
    labels_per_class: int = 5
    max_unlabeled: int = field(default=1500, metadata={"help": "Unlabeled rows to use (-1: all)."})
    max_eval: int = field(default=-1, metadata={"help": "Test rows to evaluate on (-1: all)."})
    max_length: int = 64
    trust_remote_code: bool = False
    use_peft: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])


def main() -> None:
    script, config = parse_args([ScriptArguments, SelfTrainingConfig])
    name_or_path = script.model_name_or_path or str(minilm_path())
    raw = load_from_disk(script.dataset) if os.path.isdir(script.dataset) else load_text_dataset(script.dataset)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=script.trust_remote_code)
    names = raw["train"].features[script.label_column].names

    def tokenize(batch):
        return tokenizer(batch[script.text_column], truncation=True, max_length=script.max_length)

    labeled, unlabeled = sample_per_class(
        raw["train"], script.labels_per_class, seed=config.seed, label_column=script.label_column,
        max_unlabeled=None if script.max_unlabeled < 0 else script.max_unlabeled)
    test = raw["test"]
    if 0 <= script.max_eval < len(test):
        test = test.shuffle(seed=config.seed).select(range(script.max_eval))
    with config.main_process_first(desc="tokenize"):
        labeled, unlabeled, test = (d.map(tokenize, batched=True) for d in (labeled, unlabeled, test))

    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, trust_remote_code=script.trust_remote_code)
    peft_config = None
    if script.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=script.lora_r, lora_alpha=script.lora_alpha, task_type="SEQ_CLS",
                                 target_modules=script.lora_target_modules)
    trainer = SelfTrainingTrainer(model=model, args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=test, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, peft_config=peft_config)
    trainer.card_datasets = [script.dataset]
    trainer.train()
    final = trainer.rounds[-1].get("eval") or trainer.evaluate()  # the last round was already evaluated
    trainer.save_model()
    trainer.export_pseudo_labels(os.path.join(config.output_dir, "pseudo_labeled"))
    if trainer.is_world_process_zero():
        labeled_only = trainer.rounds[0].get("eval", {}).get("eval_accuracy")
        summary = {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test),
                   "labeled_only_accuracy": labeled_only, "self_training_accuracy": final["eval_accuracy"],
                   "rounds": len(trainer.rounds), "termination": trainer.termination_condition}
        with open(os.path.join(config.output_dir, "summary.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        print(f"labeled-only accuracy:  {labeled_only:.4f}" if labeled_only is not None else "labeled-only: n/a")
        print(f"self-training accuracy: {final['eval_accuracy']:.4f}")
        print(f"model, tokenizer and card saved to {config.output_dir}")


if __name__ == "__main__":
    main()
