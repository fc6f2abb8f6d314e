"""Model cards for hf_ssl models, rendered from a template shipped in the package."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["MethodInfo", "SSLModelCardData", "TEMPLATE_NAME", "UNKNOWN_DATASET", "format_cell", "format_counts",
           "last_eval_metrics", "model_index_metrics", "render_model_card", "template_path"]

UNKNOWN_DATASET = "unknown"
"""Dataset name and type of the card's ``model-index`` results when the evaluation set has no known name."""
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "model_preparation_time",
                "jit_compilation_time")


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


def format_cell(value: float | None, spec: str = ".3f") -> str:
    """A number of the statistics table formatted with ``spec``, or ``"-"`` when it is missing (None)."""
    return "-" if value is None else format(value, spec)


def format_counts(counts: dict[str, int]) -> str:
    """Per-class counts as ``"name: count, ..."`` for the statistics table (``"-"`` when there are none)."""
    return ", ".join(f"{name}: {count}" for name, count in counts.items()) or "-"


def last_eval_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The ``eval_*`` metrics of the last evaluation in a `TrainerState.log_history` (empty if none)."""
    for entry in reversed(log_history):
        if any(key.startswith("eval_") for key in entry):
            return {k: v for k, v in entry.items() if k.startswith("eval_")}
    return {}


def model_index_metrics(eval_results: dict[str, Any]) -> dict[str, float]:
    """The metrics of an evaluation that go into the card's ``model-index``: every finite number of
    ``eval_results`` (``eval_`` prefix dropped), in their order with the loss last, but not the timing and epoch
    entries."""
    metrics = {}
    for key, value in eval_results.items():
        name = key.removeprefix("eval_")
        if (name not in _NOT_METRICS and isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value)):
            metrics[name] = float(value)
    return dict(sorted(metrics.items(), key=lambda item: item[0] == "loss"))


@dataclass
class SSLModelCardData:
    """Everything the model card of an hf_ssl model shows; `SSLTrainer.model_card_data` fills it.

    Parameters:
        model_name (`str`): the card's title.
        method (`MethodInfo`): the method that trained the model.
        architecture (`str`): class name of the (base) model, e.g. ``"BertForSequenceClassification"``; an
            ``*ImageClassification`` class makes the card an image-classification card.
        base_model_name_or_path (`str` or `None`, defaults to `None`): what the model was fine-tuned from; a Hub id
            (``org/name``) is linked and becomes ``base_model`` in the front matter, a local path is only named.
        is_peft (`bool`, defaults to `False`): whether the saved model is a PEFT adapter.
        hyperparameters (`dict[str, Any]`, defaults to ``{}``): key hyperparameters, in display order.
        stats_header (`list[str]`, defaults to ``[]``): header of the pseudo-label statistics table.
        stats_rows (`list[list[Any]]`, defaults to ``[]``): its rows (one per round or epoch).
        kept_model (`str` or `None`, defaults to `None`): which model of the run this is and why (e.g. the round a
            safeguard kept); shown under the statistics table.
        class_names (`list[str]`, defaults to ``[]``): class names, in label order.
        labeled_counts (`list[int]`, defaults to ``[]``): labeled examples per class, in label order.
        n_unlabeled (`int`, defaults to `0`): rows of the unlabeled pool.
        num_labels (`int`, defaults to `0`): classes of the model.
        datasets (`list[str]`, defaults to ``[]``): dataset ids of the pools, for the front matter; the first one
            names the ``model-index`` results (``"unknown"`` when there is none).
        eval_results (`dict[str, float]`, defaults to ``{}``): final evaluation metrics (``eval_*`` keys); when
            there are any, the front matter's ``model-index`` carries them (see `model_index_metrics`).
        hub_model_id (`str` or `None`, defaults to `None`): repository id of the loading snippet (default:
            ``model_name``).
        tags (`list[str]`, defaults to ``[]``): Hub tags besides the method's.
        language (`str` or `list[str]` or `None`, defaults to `None`): language code(s).
        license (`str` or `None`, defaults to `None`): license id.
    """

    model_name: str
    method: MethodInfo
    architecture: str
    base_model_name_or_path: str | None = None
    is_peft: bool = False
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    stats_header: list[str] = field(default_factory=list)
    stats_rows: list[list[Any]] = field(default_factory=list)
    kept_model: str | None = None
    class_names: list[str] = field(default_factory=list)
    labeled_counts: list[int] = field(default_factory=list)
    n_unlabeled: int = 0
    num_labels: int = 0
    datasets: list[str] = field(default_factory=list)
    eval_results: dict[str, float] = field(default_factory=dict)
    hub_model_id: str | None = None
    tags: list[str] = field(default_factory=list)
    language: str | list[str] | None = None
    license: str | None = None


def render_model_card(data: SSLModelCardData) -> str:
    """Render the card as Markdown with YAML front matter from the packaged template.

    Parameters:
        data (`SSLModelCardData`): what the card shows.
    """
    method = data.method
    base_model = _hub_id(data.base_model_name_or_path)
    is_image = "ImageClassification" in data.architecture
    auto_class = "AutoModelForImageClassification" if is_image else "AutoModelForSequenceClassification"
    pipeline_tag = "image-classification" if is_image else "text-classification"
    datasets = data.datasets
    dataset = datasets[0] if datasets else UNKNOWN_DATASET
    card_eval = [EvalResult(task_type=pipeline_tag, dataset_type=dataset, dataset_name=dataset, metric_type=name,
                            metric_value=value) for name, value in model_index_metrics(data.eval_results).items()]
    card_data = ModelCardData(
        library_name="peft" if data.is_peft else "transformers", base_model=base_model, datasets=datasets or None,
        tags=list(dict.fromkeys([*method.tags, method.name, *data.tags])),
        pipeline_tag=pipeline_tag, language=data.language, license=data.license, model_name=data.model_name,
        eval_results=card_eval or None,
    )
    names = data.class_names or [str(i) for i in range(len(data.labeled_counts))]
    card = ModelCard.from_template(
        card_data, template_path=template_path(), model_name=data.model_name, method_title=method.title,
        method_description=method.description, hyperparameters=data.hyperparameters,
        base_model=base_model, base_model_path=None if base_model else data.base_model_name_or_path,
        architecture=data.architecture, is_peft=data.is_peft, n_labeled=int(sum(data.labeled_counts)),
        n_unlabeled=data.n_unlabeled, n_classes=data.num_labels,
        labeled_per_class=list(zip(names, data.labeled_counts, strict=False)), stats_header=data.stats_header,
        stats_rows=data.stats_rows, kept_model=data.kept_model,
        eval_results={k: round(float(v), 4) for k, v in data.eval_results.items()},
        auto_class=auto_class, repo_id=data.hub_model_id or data.model_name, paper=method.paper,
        versions={p: _version(p) for p in ("hf-ssl", "transformers", "torch", "datasets", "peft")},
    )
    return str(card)
