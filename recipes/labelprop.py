"""Label a text pool from a few labels: encode → (optionally) choose what to label → propagate → export.

Runs offline on its defaults (the packaged all-MiniLM-L6-v2 embeddings of Reuters R8, 5 labels per class):

    python recipes/labelprop.py --output_dir outputs/labelprop
    python recipes/labelprop.py --select kmeans --budget 40      # pick the 40 rows to label by k-means
    python recipes/labelprop.py --finetune true                  # then fine-tune on labeled + propagated rows

With a dual encoder (``CLIPModel``, ``VisionTextDualEncoderModel``) and a ``save_to_disk`` folder whose rows hold
``pixel_values``, the image tower embeds the rows, and ``--zero_shot_prior true`` initialises the unlabeled rows
with zero-shot probabilities from class-name prompts (``--prompt_templates``, the label column's ClassLabel names)
weighted by ``--prior_weight``.

With ``--select``, the chosen rows' true labels stand in for an annotator (the packaged corpora are fully
labeled); on your own data, label the exported ``to_label`` rows and pass them back as the labeled pool.
The export is a ``save_to_disk`` folder with ``label`` (given or propagated), ``confidence`` and ``source``
("given" or "propagated").
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import numpy as np
from accelerate import PartialState
from datasets import ClassLabel, Value, load_from_disk
from transformers import AutoModel, AutoTokenizer, HfArgumentParser, set_seed

from hf_ssl import (
    LabelPropagator,
    encode,
    load_text_dataset,
    minilm_path,
    sample_per_class,
    select_for_labeling,
    zero_shot_probabilities,
)
from hf_ssl.graph.embeddings import is_dual_encoder
from hf_ssl.scripts.utils import leave_together, parse_args


@dataclass
class LabelPropArguments:
    """What to propagate.

    Parameters:
        output_dir (`str`, defaults to `"outputs/labelprop"`): where the pseudo-labeled dataset and summary go.
        model_name_or_path (`str` or `None`, defaults to `None`): encoder (`None`: the packaged all-MiniLM-L6-v2).
        dataset (`str`, defaults to `"reuters-r8"`): packaged corpus name or a `save_to_disk` folder with a
            ``train`` split (and optional ``test``).
        labels_per_class (`int`, defaults to `5`): labels sampled per class when ``select`` is `"none"`.
        select (`str`, defaults to `"none"`): `"none"` samples ``labels_per_class`` per class; `"kmeans"` or
            `"random"` choose ``budget`` rows to label.
        budget (`int`, defaults to `40`): rows to label when selecting.
        n_neighbors (`int`, defaults to `10`): k of the kNN graph.
        alpha (`float`, defaults to `0.95`): label-spreading α, in (0, 1).
        max_rows (`int`, defaults to `-1`): use at most this many rows of the train split (-1: all).
        max_length (`int`, defaults to `128`): tokenizer truncation length.
        seed (`int`, defaults to `0`): sampling seed.
        finetune (`bool`, defaults to `False`): fine-tune a classifier on labeled + propagated rows afterwards
            (`SelfTrainingTrainer` with ``max_rounds=0``).
        zero_shot_prior (`bool`, defaults to `False`): dual encoders only: initialise the unlabeled rows with
            zero-shot class probabilities from class-name prompts through the text tower.
        prompt_templates (`list[str]`, defaults to ``["a photo of a {}."]``): prompt templates for the zero-shot
            prior, each with ``{}`` for the class name (several are averaged per class).
        prior_weight (`float`, defaults to `1.0`): weight of the zero-shot prior relative to a labeled row
            (`LabelPropagator`'s ``prior_weight``).
        use_cpu (`bool`, defaults to `False`): run on the CPU, also as several processes under ``accelerate
            launch`` (each encodes a shard; the main process propagates and writes the export; every process takes
            part in ``finetune``).
    """

    output_dir: str = "outputs/labelprop"
    model_name_or_path: str | None = None
    dataset: str = "reuters-r8"
    labels_per_class: int = 5
    select: str = field(default="none", metadata={"help": "none, kmeans or random"})
    budget: int = 40
    n_neighbors: int = 10
    alpha: float = 0.95
    max_rows: int = -1
    max_length: int = 128
    seed: int = 0
    finetune: bool = False
    zero_shot_prior: bool = field(default=False, metadata={"help": "Dual encoders: zero-shot prior from prompts."})
    prompt_templates: list[str] = field(default_factory=lambda: ["a photo of a {}."],
                                        metadata={"help": "Prompt templates with {} for the class name."})
    prior_weight: float = 1.0
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU (also under accelerate launch)."})


def main() -> None:
    (args,) = parse_args([LabelPropArguments])
    state = PartialState(cpu=args.use_cpu)
    if args.select not in ("none", "kmeans", "random"):
        raise SystemExit(f"--select must be none, kmeans or random, got {args.select!r}")
    path = args.model_name_or_path or str(minilm_path())
    raw = load_from_disk(args.dataset) if os.path.isdir(args.dataset) else load_text_dataset(args.dataset)
    train = raw["train"]
    if 0 <= args.max_rows < len(train):
        train = train.shuffle(seed=args.seed).select(range(args.max_rows))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path)
    dual = is_dual_encoder(model)
    if args.zero_shot_prior and not dual:
        raise SystemExit(f"--zero_shot_prior needs a dual encoder (CLIPModel, VisionTextDualEncoderModel), got "
                         f"{type(model).__name__}")
    if args.zero_shot_prior and not isinstance(train.features["label"], ClassLabel):
        raise SystemExit("--zero_shot_prior takes the class names from the label column, which must be a ClassLabel")
    tower = ("image" if "pixel_values" in train.column_names else "text") if dual else None
    if args.finetune and tower == "image":
        raise SystemExit("--finetune fine-tunes a text classifier: it does not apply to image rows")
    X = encode(model, train, tokenizer, max_length=args.max_length, tower=tower,
               cache_dir=os.path.join(args.output_dir, ".embedding_cache"), accelerator=state)
    export = os.path.join(args.output_dir, "pseudo_labeled")
    if state.is_main_process:
        propagate_and_export(args, model, tokenizer, train, X, export)
    state.wait_for_everyone()
    if args.finetune:
        finetune(args, path, load_from_disk(export), raw.get("test"))
    leave_together(state)


def propagate_and_export(args: LabelPropArguments, model, tokenizer, train, X: np.ndarray, export: str) -> None:
    """Choose the labeled rows, spread their labels, and write the export and ``summary.json`` (main process)."""
    truth = np.asarray(train["label"])
    y = np.full(len(train), -1)
    if args.select == "none":
        labeled, _ = sample_per_class(train.add_column("row", list(range(len(train)))), args.labels_per_class,
                                      seed=args.seed)
        chosen = np.asarray(labeled["row"])
    else:
        chosen = select_for_labeling(X, args.budget, strategy=args.select, random_state=args.seed)
    y[chosen] = truth[chosen]
    prior = None
    if args.zero_shot_prior:
        prior = zero_shot_probabilities(model, tokenizer, train.features["label"].names, X,
                                        templates=args.prompt_templates)
    spread = LabelPropagator(n_neighbors=args.n_neighbors, alpha=args.alpha, random_state=args.seed,
                             prior_weight=args.prior_weight).fit(X, y, prior=prior)
    source = np.where(y >= 0, "given", "propagated")
    out = train.add_column("propagated_label", spread.transduction_.tolist())
    out = out.add_column("confidence", spread.confidence_.astype(np.float32).tolist(), feature=Value("float32"))
    out = out.add_column("source", source.tolist())
    out = out.remove_columns("label").rename_column("propagated_label", "label")
    out = out.cast_column("label", ClassLabel(names=train.features["label"].names))
    unlabeled = y < 0
    accuracy = float((spread.transduction_[unlabeled] == truth[unlabeled]).mean())
    os.makedirs(args.output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=args.output_dir, prefix=".export-")
    out.save_to_disk(tmp)
    if os.path.exists(export):
        shutil.rmtree(export)
    os.replace(tmp, export)
    summary = {"rows": len(train), "labeled": int(len(chosen)), "select": args.select,
               "propagated_accuracy_vs_held_back_labels": accuracy, "timings": spread.timings_, "index": spread.index_,
               "zero_shot_prior": bool(args.zero_shot_prior)}
    if args.zero_shot_prior:
        summary.update(prompt_templates=list(args.prompt_templates), prior_weight=float(args.prior_weight))
    with open(os.path.join(args.output_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    print(f"{len(chosen)} labels propagated to {int(unlabeled.sum())} rows; accuracy against the held-back "
          f"labels: {accuracy:.4f}; export: {export}")


def finetune(args: LabelPropArguments, path: str, data, test) -> None:
    """Fine-tune a classifier on the given and propagated rows alike (labeled-only `SelfTrainingTrainer`)."""
    from transformers import AutoModelForSequenceClassification

    from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
    from hf_ssl.data.metrics import classification_metrics

    names = data.features["label"].names
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenized = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length), batched=True)
    set_seed(args.seed)  # the new classification head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    config = HfArgumentParser(SelfTrainingConfig).parse_dict(
        {"output_dir": os.path.join(args.output_dir, "model"), "max_rounds": 0, "num_train_epochs": 2,
         "report_to": "none", "save_strategy": "no", "seed": args.seed, "use_cpu": args.use_cpu})[0]
    evaluation = None
    if test is not None:
        evaluation = test.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length),
                              batched=True)
    trainer = SelfTrainingTrainer(model=model, args=config, train_dataset=tokenized.remove_columns(["source"]),
                                  eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    trainer.train()
    trainer.save_model()
    if evaluation is not None:
        accuracy = trainer.evaluate()["eval_accuracy"]  # every process takes part in the evaluation
        if trainer.is_world_process_zero():
            print(f"fine-tuned on propagated labels: test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
