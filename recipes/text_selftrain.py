"""Self-training on text: labeled-only fine-tuning vs self-training, then save model, tokenizer and card.

Runs offline on its defaults (the packaged all-MiniLM-L6-v2 and Reuters R8, 5 labels per class):

    python recipes/text_selftrain.py
    accelerate launch recipes/text_selftrain.py --max_unlabeled -1        # the whole unlabeled pool
    python recipes/text_selftrain.py --config my.yaml --threshold 0.95
    python recipes/text_selftrain.py --save_strategy steps           # also checkpoint each round, to resume

It keeps the final model, tokenizer, card, pseudo-label export and records; checkpoints are opt-in
(``save_strategy`` defaults to ``"no"`` here; the config keeps at most ``save_total_limit`` of them).
"""

from __future__ import annotations

import json
import os

from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
from hf_ssl.data.metrics import classification_metrics
from hf_ssl.scripts.utils import PeftArguments, TextDataArguments, leave_together, parse_args


def main() -> None:
    script, peft_args, config = parse_args([TextDataArguments, PeftArguments, SelfTrainingConfig],
                                           defaults={"save_strategy": "no"})
    name_or_path = script.model_path()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=script.trust_remote_code)
    labeled, unlabeled, test, names = script.pools(tokenizer, config)

    set_seed(config.seed)  # the new classification head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, trust_remote_code=script.trust_remote_code)
    peft_config = peft_args.peft_config("SEQ_CLS")
    trainer = SelfTrainingTrainer(model=model, args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=test, processing_class=tokenizer,
                                  compute_metrics=classification_metrics, peft_config=peft_config)
    trainer.card_datasets = [script.dataset]
    trainer.train()
    kept = next((r for r in trainer.rounds if r["round"] == trainer.kept_round), trainer.rounds[-1])
    final = kept.get("eval") or trainer.evaluate()  # the kept round's model was evaluated at its end
    trainer.save_model()
    trainer.export_pseudo_labels(os.path.join(config.output_dir, "pseudo_labeled"))
    if trainer.is_world_process_zero():
        labeled_only = trainer.rounds[0].get("eval", {}).get("eval_accuracy")
        summary = {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test),
                   "labeled_only_accuracy": labeled_only, "self_training_accuracy": final["eval_accuracy"],
                   "rounds": len(trainer.rounds), "kept_round": trainer.kept_round,
                   "termination": trainer.termination_condition}
        with open(os.path.join(config.output_dir, "summary.json"), "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
        print(f"labeled-only accuracy:  {labeled_only:.4f}" if labeled_only is not None else "labeled-only: n/a")
        print(f"self-training accuracy: {final['eval_accuracy']:.4f} (the model of round {kept['round']})")
        print(f"model, tokenizer and card saved to {config.output_dir}")
    leave_together(trainer.accelerator)


if __name__ == "__main__":
    main()
