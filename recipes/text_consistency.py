"""Consistency regularization on text (FixMatch by default), then save model, tokenizer and card.

Runs offline on its defaults (the packaged all-MiniLM-L6-v2 and Reuters R8, 5 labels per class, 1,500
unlabeled rows, FixMatch with a 0.7 threshold):

    python recipes/text_consistency.py
    python recipes/text_consistency.py --method uda --threshold_strategy softmatch
    accelerate launch recipes/text_consistency.py --config my.yaml --use_peft
    python recipes/text_consistency.py --baseline       # also train labeled-only with the same settings

The strong text view is token masking / random replacement / word dropout / span deletion / local
shuffle; if your unlabeled rows carry precomputed strong views (e.g. tokenized back-translations in
``strong_input_ids`` / ``strong_attention_mask``) they are used instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_ssl import ConsistencyConfig, ConsistencyTrainer, SSLTrainer
from hf_ssl.cli import PeftArguments, TextDataArguments, parse_args
from hf_ssl.metrics import classification_metrics
from hf_ssl.ssl_config import labeled_only_config


@dataclass
class RecipeArguments:
    """Recipe options.

    Args:
        baseline: also fine-tune on the labeled pool only (same model, optimizer, epochs and batch size)
            and print both accuracies.
    """

    baseline: bool = field(default=False, metadata={"help": "Also train a labeled-only model for comparison."})


def main() -> None:
    script, peft_args, recipe, config = parse_args(
        [TextDataArguments, PeftArguments, RecipeArguments, ConsistencyConfig],
        defaults={"threshold": 0.7, "output_dir": "outputs/text_consistency"})
    name_or_path = script.model_path()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=script.trust_remote_code)
    labeled, unlabeled, test, names = script.pools(tokenizer, config)

    def new_model():
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, trust_remote_code=script.trust_remote_code)

    summary = {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test), "method": config.method,
               "threshold_strategy": config.threshold_strategy}
    if recipe.baseline:
        base_args = labeled_only_config(config, output_dir=os.path.join(config.output_dir, "labeled_only"),
                                        save_strategy="no")
        baseline = SSLTrainer(model=new_model(), args=base_args, train_dataset=labeled, eval_dataset=test,
                              processing_class=tokenizer, compute_metrics=classification_metrics,
                              peft_config=peft_args.peft_config("SEQ_CLS"))
        baseline.train()
        summary["labeled_only_accuracy"] = baseline.evaluate()["eval_accuracy"]
    trainer = ConsistencyTrainer(model=new_model(), args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 eval_dataset=test, processing_class=tokenizer, compute_metrics=classification_metrics,
                                 peft_config=peft_args.peft_config("SEQ_CLS"))
    trainer.card_datasets = [script.dataset]
    trainer.train()
    final = trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        summary["accuracy"] = final["eval_accuracy"]
        summary["epochs"] = trainer.epoch_records
        with open(os.path.join(config.output_dir, "summary.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        if "labeled_only_accuracy" in summary:
            print(f"labeled-only accuracy: {summary['labeled_only_accuracy']:.4f}")
        print(f"{config.method} accuracy: {final['eval_accuracy']:.4f}")
        print(f"model, tokenizer and card saved to {config.output_dir}")


if __name__ == "__main__":
    main()
