"""Arms that fine-tune the packaged pretrained model (MiniLM for text, the ``backbone`` for images) end to end.

Each arm builds its trainer's config from the run's ``settings`` over the package defaults (plus the bookkeeping
fields in `base_fields`), so an arm with no settings measures the defaults a user gets. Every arm but
``full_label`` trains for the same number of optimizer steps per round (``num_train_epochs`` over the labeled pool,
or ``max_steps``) at the same labeled batch size:

- ``labeled_only``: `SSLTrainer` on the labeled pool (`bench.common.labeled_only_trainer`; images get the weak view
  through a λ = 0 `ConsistencyTrainer`); ``settings.head_init`` chooses a random or a linear-probe head.
- ``full_label``: `SSLTrainer` on every row of the training split with its true label (the ceiling).
- ``self_training``: `SelfTrainingTrainer` (accuracy of the model it keeps; each round's accuracy and safeguard
  check, and the kept round, are recorded).
- ``consistency``: `ConsistencyTrainer` (``settings.method`` and the rest of `ConsistencyConfig`).
- ``label_propagation``: `LabelPropagationTrainer`.

The model is scored on the run's evaluation rows after training (`Trainer.evaluate`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

import hf_ssl
from bench.common import classifier, labeled_only_trainer
from bench.suite.data import Pools, encoder_path, model_inputs, processor
from bench.suite.spec import RunSpec
from hf_ssl.data.metrics import classification_metrics

RECORDED_TRAINING_FIELDS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                            "lr_scheduler_type", "warmup_steps", "weight_decay", "seed")
"""`TrainingArguments` fields recorded with every run, besides every field hf_ssl's configs add."""


def base_fields(output_dir: str, seed: int) -> dict[str, Any]:
    """Config fields of every fine-tuning arm that do not change what is learned: no checkpoints, no reporting."""
    return {"output_dir": output_dir, "seed": seed, "report_to": "none", "save_strategy": "no",
            "disable_tqdm": True}


def recorded_config(args: TrainingArguments) -> dict[str, Any]:
    """The fields of a trainer's config worth recording: hf_ssl's own and `RECORDED_TRAINING_FIELDS`."""
    inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
    names = [f.name for f in dataclasses.fields(args) if f.name not in inherited or f.name in RECORDED_TRAINING_FIELDS]
    return {name: getattr(args, name) for name in names}


def _labeled_only(fields: dict, inputs: dict, kwargs: dict, image: bool) -> Any:
    return labeled_only_trainer(fields, inputs["labeled"], inputs["unlabeled"], image, **kwargs)


def _full_label(fields: dict, inputs: dict, kwargs: dict, image: bool) -> Any:
    return hf_ssl.SSLTrainer(args=hf_ssl.SSLConfig(**fields), train_dataset=inputs["train"], **kwargs)


def _semi_supervised(trainer_class: type, config_class: type) -> Callable[..., Any]:
    def build(fields: dict, inputs: dict, kwargs: dict, image: bool) -> Any:
        return trainer_class(args=config_class(**fields), train_dataset=inputs["labeled"],
                             unlabeled_dataset=inputs["unlabeled"], **kwargs)

    return build


BUILDERS: dict[str, Callable[..., Any]] = {
    "labeled_only": _labeled_only,
    "full_label": _full_label,
    "self_training": _semi_supervised(hf_ssl.SelfTrainingTrainer, hf_ssl.SelfTrainingConfig),
    "consistency": _semi_supervised(hf_ssl.ConsistencyTrainer, hf_ssl.ConsistencyConfig),
    "label_propagation": _semi_supervised(hf_ssl.LabelPropagationTrainer, hf_ssl.LabelPropagationConfig),
}


def trainer_records(trainer: Any) -> dict[str, Any]:
    """What the trainer logged about its method: rounds, graph builds, propagations, epoch records."""
    records: dict[str, Any] = {}
    if isinstance(trainer, hf_ssl.SelfTrainingTrainer):
        records["per_round_accuracy"] = [r.get("eval", {}).get("eval_accuracy") for r in trainer.rounds]
        records["pseudo_labels"] = [r.get("pseudo_labels") for r in trainer.rounds]
        records["per_round_check"] = [r.get("check") for r in trainer.rounds]  # the safeguard's check per round
        records["kept_round"] = trainer.kept_round
        records["termination"] = trainer.termination_condition
    if isinstance(trainer, hf_ssl.ConsistencyTrainer):
        records["graph_records"] = trainer.graph_records
        records["epoch_records"] = trainer.epoch_records
    if isinstance(trainer, hf_ssl.LabelPropagationTrainer):
        records["propagations"] = trainer.propagations
    if getattr(trainer, "head_init_record", None):
        records["head_init"] = trainer.head_init_record
    return records


def run_finetune(spec: RunSpec, pools: Pools, cache: Path) -> dict[str, Any]:
    """Train the arm ``spec.kind`` on the run's pools and score it on the evaluation rows."""
    image = pools.modality == "image"
    wanted = ("train",) if spec.kind == "full_label" else ("labeled", "unlabeled")
    inputs = {name: model_inputs(getattr(pools, name), pools.modality, spec.data) for name in wanted}
    evaluation = model_inputs(pools.evaluation, pools.modality, spec.data)
    torch.manual_seed(spec.seed)
    model = classifier(pools.modality, pools.names, path=encoder_path(pools.modality, spec.data))
    kwargs = {"model": model, "eval_dataset": evaluation, "processing_class": processor(pools.modality, spec.data),
              "compute_metrics": classification_metrics}
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="train-") as output_dir:
        trainer = BUILDERS[spec.kind]({**base_fields(output_dir, spec.seed), **spec.settings}, inputs, kwargs, image)
        start = time.time()
        trainer.train()
        seconds = time.time() - start
        metrics = trainer.evaluate()
    return {"accuracy": metrics["eval_accuracy"], "macro_f1": metrics.get("eval_macro_f1"),
            "train_seconds": round(seconds, 1), "steps": trainer.state.global_step,
            "labeled": len(inputs.get("labeled", inputs.get("train"))), "unlabeled": len(inputs.get("unlabeled", [])),
            "trainer": type(trainer).__name__, "config": recorded_config(trainer.args), **trainer_records(trainer)}
