"""Consistency regularization on text (FixMatch by default), then save model, tokenizer and card.

Runs offline on its defaults (the packaged all-MiniLM-L6-v2 and Reuters R8, 5 labels per class, 1,500
unlabeled rows, FixMatch with `ConsistencyConfig`'s defaults: a 0.7 threshold, a linear-probe head start and the
graph prior at weight 0.5):

    python recipes/text_consistency.py
    python recipes/text_consistency.py --method uda --threshold_strategy softmatch
    accelerate launch recipes/text_consistency.py --config my.yaml --use_peft
    python recipes/text_consistency.py --baseline       # also train labeled-only with the same settings

The strong text view is token masking / random replacement / word dropout / span deletion / local
shuffle; if your unlabeled rows carry precomputed strong views (e.g. tokenized back-translations in
``strong_input_ids`` / ``strong_attention_mask``) they are used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_ssl import ConsistencyConfig
from hf_ssl.scripts.utils import PeftArguments, TextDataArguments, parse_args, run_consistency_recipe


@dataclass
class RecipeArguments:
    """Recipe options.

    Parameters:
        baseline (`bool`, defaults to `False`): also fine-tune on the labeled pool only (same model, optimizer,
            epochs and batch size) and print both accuracies.
    """

    baseline: bool = field(default=False, metadata={"help": "Also train a labeled-only model for comparison."})


def main() -> None:
    script, peft_args, recipe, config = parse_args(
        [TextDataArguments, PeftArguments, RecipeArguments, ConsistencyConfig],
        defaults={"output_dir": "outputs/text_consistency"})
    name_or_path = script.model_path()
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=script.trust_remote_code)
    labeled, unlabeled, test, names = script.pools(tokenizer, config)

    def new_model():
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}, trust_remote_code=script.trust_remote_code)

    run_consistency_recipe(new_model, config, labeled, unlabeled, test, tokenizer, peft_args.peft_config("SEQ_CLS"),
                           recipe.baseline, script.dataset)


if __name__ == "__main__":
    main()
