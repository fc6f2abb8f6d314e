"""Builders for the malformed-input reliability suite: tiny pools, column edits, and a trainer run that fails the
test if a training step starts before the input is rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from datasets import Dataset
from transformers import TrainerCallback

from hf_ssl import (
    ConsistencyConfig,
    ConsistencyTrainer,
    LabelPropagationConfig,
    LabelPropagationTrainer,
    SelfTrainingConfig,
    SelfTrainingTrainer,
)

TRAINERS = {
    "self_training": (SelfTrainingTrainer, SelfTrainingConfig, {"max_rounds": 1}),
    "consistency": (ConsistencyTrainer, ConsistencyConfig, {}),
    "label_propagation": (LabelPropagationTrainer, LabelPropagationConfig, {"n_neighbors": 3, "head_init": "random"}),
}
KINDS = tuple(TRAINERS)


class TrainingStarted(AssertionError):
    """Raised by `NoTrainingStep`: the malformed input reached a training step."""


class NoTrainingStep(TrainerCallback):
    """Fails the test as soon as a training step begins."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise TrainingStarted("a training step started: the malformed input was not rejected before training")


@dataclasses.dataclass
class Inputs:
    """What a case hands to a trainer; a case returns an edited copy (`dataclasses.replace`)."""

    labeled: Dataset
    unlabeled: Dataset
    model: Any
    processing_class: Any = None
    eval_dataset: Dataset | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def but(self, **changes: Any) -> Inputs:
        return dataclasses.replace(self, **changes)


def base_config(kind: str, tmp_path: Any, **overrides: Any) -> Any:
    """The fast config of trainer ``kind`` (one epoch, no saving, CPU) with ``overrides``."""
    _, config_class, extra = TRAINERS[kind]
    values = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, num_train_epochs=1,
                  per_device_train_batch_size=4, save_strategy="no", disable_tqdm=True) | extra | overrides
    return config_class(**values)


def run(kind: str, tmp_path: Any, inputs: Inputs) -> Any:
    """Build trainer ``kind`` on ``inputs`` and train it; `NoTrainingStep` fails the test at the first step."""
    trainer_class = TRAINERS[kind][0]
    trainer = trainer_class(model=inputs.model, args=base_config(kind, tmp_path, **inputs.config),
                            train_dataset=inputs.labeled, unlabeled_dataset=inputs.unlabeled,
                            eval_dataset=inputs.eval_dataset, processing_class=inputs.processing_class,
                            callbacks=[NoTrainingStep()])
    trainer.train()
    return trainer


def with_column(dataset: Dataset, name: str, values: list[Any]) -> Dataset:
    """``dataset`` with column ``name`` set to ``values`` (added, or replaced with an inferred type)."""
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return dataset.add_column(name, values)


def edit_rows(dataset: Dataset, name: str, edit: Callable[[int, Any], Any]) -> Dataset:
    """``dataset`` with ``column[i] = edit(i, column[i])`` for every row."""
    return with_column(dataset, name, [edit(i, value) for i, value in enumerate(dataset[name])])


def edit_row(dataset: Dataset, name: str, row: int, edit: Callable[[Any], Any]) -> Dataset:
    """``dataset`` with only row ``row`` of column ``name`` edited."""
    return edit_rows(dataset, name, lambda i, value: edit(value) if i == row else value)
