"""Model cards for hf_ssl models, rendered from a template shipped in the package."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import Trainer

__all__ = ["MethodInfo", "TEMPLATE_NAME", "template_path", "render_model_card"]


@dataclass
class MethodInfo:
    """What a model card says about the method that trained the model.

    Parameters:
        name (`str`): short method id, also a card tag (e.g. ``"self_training"``).
        title (`str`): the method's name in prose.
        description (`str`, defaults to ``""``): one paragraph on how the method trains.
        paper (`dict[str, str]` or `None`, defaults to `None`): ``{"title": ..., "url": ...}`` of the paper to cite.
        tags (`list[str]`, defaults to ``[]``): Hub tags of the model.
    """

    name: str
    title: str
    description: str = ""
    paper: dict[str, str] | None = None
    tags: list[str] = field(default_factory=list)

TEMPLATE_NAME = "model_card_template.md"


def template_path() -> str:
    """Path of the card template, shipped beside this module."""
    return str(importlib.resources.files("hf_ssl.trainer") / TEMPLATE_NAME)


def _hub_id(name: str | None) -> str | None:
    """A Hub model id if ``name`` looks like one (``org/name``, not a local path)."""
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")) or name.count("/") != 1:
        return None
    return name


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _last_eval(trainer: Trainer) -> dict[str, float]:
    for entry in reversed(trainer.state.log_history):
        if any(key.startswith("eval_") for key in entry):
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return {}


def render_model_card(trainer: Trainer, model_name: str | None = None,
                      dataset_name: str | list[str] | None = None, eval_results: dict[str, float] | None = None,
                      tags: str | list[str] | None = None, language: str | None = None, license: str | None = None,
                      finetuned_from: str | None = None, **_: Any) -> str:
    """Render the card of a trainer's model as Markdown with YAML front matter.

    Args:
        trainer: the trainer (its args, pools, statistics and log history fill the card).
        model_name: title (default: the output folder's name).
        dataset_name: dataset id(s) of the pools for the front matter.
        eval_results: final metrics (default: the last evaluation in the log history).
        tags: extra tags.
        language: language code(s).
        license: license id.
        finetuned_from: base model id (default: the model config's ``_name_or_path`` if a Hub id).
    """
    method = trainer.method_info()
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "peft_config")
    base = model.get_base_model() if is_peft else model
    config = base.config
    name_or_path = finetuned_from or getattr(config, "_name_or_path", None)
    base_model = _hub_id(name_or_path)
    architecture = type(base).__name__
    is_image = "ImageClassification" in architecture
    auto_class = "AutoModelForImageClassification" if is_image else "AutoModelForSequenceClassification"
    pipeline_tag = "image-classification" if is_image else "text-classification"
    datasets = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name or trainer.card_datasets)
    eval_results = eval_results if eval_results is not None else _last_eval(trainer)
    title = model_name or os.path.basename(os.path.abspath(trainer.args.output_dir))
    card_eval = [
        EvalResult(task_type=pipeline_tag, dataset_type=datasets[0] if datasets else "custom",
                   dataset_name=datasets[0] if datasets else "evaluation split",
                   metric_type=key.removeprefix("eval_"), metric_value=float(value))
        for key, value in eval_results.items()
        if key.removeprefix("eval_") in ("accuracy", "f1", "macro_f1", "precision", "recall")
    ]
    extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
    card_data = ModelCardData(
        library_name="peft" if is_peft else "transformers", base_model=base_model, datasets=datasets or None,
        tags=list(dict.fromkeys([*method.tags, method.name, *extra_tags])),
        pipeline_tag=pipeline_tag, language=language, license=license, model_name=title,
        eval_results=card_eval or None,
    )
    header, rows = trainer.card_statistics()
    counts = trainer.labeled_counts.tolist() if trainer.labeled_counts is not None else []
    names = trainer.class_names or [str(i) for i in range(len(counts))]
    unlabeled = trainer.unlabeled_dataset
    card = ModelCard.from_template(
        card_data, template_path=template_path(), model_name=title, method_title=method.title,
        method_description=method.description, hyperparameters=trainer.card_hyperparameters(),
        base_model=base_model, base_model_path=None if base_model else name_or_path, architecture=architecture,
        is_peft=is_peft, n_labeled=int(sum(counts)), n_unlabeled=len(unlabeled) if unlabeled is not None else 0,
        n_classes=trainer.num_labels, labeled_per_class=list(zip(names, counts, strict=False)), stats_header=header,
        stats_rows=rows, eval_results={k: round(float(v), 4) for k, v in eval_results.items()},
        auto_class=auto_class, repo_id=trainer.args.hub_model_id or title, paper=method.paper,
        versions={p: _version(p) for p in ("hf-ssl", "transformers", "torch", "datasets", "peft")},
    )
    return str(card)
