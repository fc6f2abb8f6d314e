"""`SSLTrainer`: the `transformers.Trainer` base every hf_ssl method extends.

It validates the labeled and unlabeled pools before training, feeds an unlabeled (or pseudo-labeled)
stream beside the labeled batches, collects SSL metrics in ``compute_loss`` and flushes them through
the Trainer's own ``log``, keeps hf_ssl columns despite ``remove_unused_columns``, stores hf_ssl state
in checkpoints, and renders the model card.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import Trainer

from hf_ssl.data.collators import SSL_COLUMNS, SSLDataCollator
from hf_ssl.data.metrics import check_compute_metrics
from hf_ssl.data.sampling import UnlabeledBatchSampler
from hf_ssl.data.validation import LABEL_COLUMNS, check_label_names, label_column_of
from hf_ssl.methods.head_init import init_head_from_probe
from hf_ssl.trainer.base_config import SSLConfig
from hf_ssl.trainer.checkpointing import CheckpointingMixin
from hf_ssl.trainer.model_card import MethodInfo, SSLModelCardData, last_eval_metrics, render_model_card
from hf_ssl.trainer.peft_utils import wrap_with_peft
from hf_ssl.trainer.preflight import check_pools
from hf_ssl.utils import write_text_atomic

logger = get_logger(__name__)

__all__ = ["SSLTrainer"]


class SSLTrainer(CheckpointingMixin, Trainer):
    """A `Trainer` with an unlabeled pool.

    Built like any `Trainer`, plus ``unlabeled_dataset``. Subclasses implement a method by overriding
    ``compute_loss`` (drawing unlabeled batches with `next_unlabeled_batch`) or ``train``, and describe it on the
    model card through `method_info`, `card_hyperparameters` and `card_statistics`. On its own it fine-tunes on the
    labeled pool (a labeled-only baseline).

    Parameters:
        model (`PreTrainedModel`):
            A model for sequence or image classification (``model_init`` is not supported).
        args (`SSLConfig` or `None`, *optional*, defaults to `None`):
            The config, an instance of the trainer's ``config_class``; `None` builds a default one whose
            ``output_dir`` is ``"<model class>-<method_name>"``.
        data_collator (`DataCollator` or `None`, *optional*, defaults to `None`):
            Collator of the model inputs, as in `Trainer`; hf_ssl wraps it to carry its own columns.
        train_dataset (`datasets.Dataset` or `None`, *optional*, defaults to `None`):
            The labeled pool, with a ``label`` or ``labels`` column.
        unlabeled_dataset (`datasets.Dataset` or `None`, *optional*, defaults to `None`):
            The unlabeled pool: the same input columns, no labels; optionally the hidden truth column
            (``args.truth_column``) for monitoring.
        eval_dataset (`datasets.Dataset` or `dict[str, datasets.Dataset]` or `None`, *optional*, defaults to `None`):
            Evaluation pool(s), as in `Trainer`.
        processing_class (tokenizer, image processor or processor, *optional*, defaults to `None`):
            As in `Trainer`.
        peft_config (`peft.PeftConfig` or `None`, *optional*, defaults to `None`):
            E.g. a `LoraConfig`: the model is wrapped with `get_peft_model` and its classification head stays
            trainable.
        **kwargs:
            Any other `Trainer` argument (``callbacks``, ``compute_metrics``, ``optimizers``, ...).

    Attributes:
        class_names (`list[str]`): class names, aligned with the model config's ``id2label``.
        labeled_counts (`np.ndarray`): labeled examples per class.
        card_datasets (`list[str]`): dataset ids written to the model card when no ``dataset_name`` is given.
        unlabeled_batches_consumed (`int`): batches drawn from the unlabeled stream (stored in checkpoints).
    """

    config_class: type[SSLConfig] = SSLConfig
    method_name: str = "ssl"
    method_title: str = "semi-supervised fine-tuning"
    method_description: str = ""
    paper: dict[str, str] | None = None
    _tag_names: list[str] = ["hf_ssl", "semi-supervised"]

    def __init__(self, model: Any = None, args: SSLConfig | None = None, data_collator: Any = None,
                 train_dataset: Dataset | None = None, unlabeled_dataset: Dataset | None = None,
                 eval_dataset: Dataset | dict[str, Dataset] | None = None, processing_class: Any = None,
                 peft_config: Any = None, **kwargs: Any) -> None:
        if model is None:
            raise ValueError(f"{type(self).__name__} needs a model (model_init is not supported by hf_ssl trainers).")
        if args is None:
            args = self.config_class(output_dir=f"{type(model).__name__}-{self.method_name}")
        if not isinstance(args, self.config_class):
            name = self.config_class.__name__
            raise TypeError(f"args must be a {name} (a TrainingArguments subclass), got {type(args).__name__}. "
                            f"Build it with {name}(output_dir=..., ...).")
        check_compute_metrics(kwargs.get("compute_metrics"))
        self.unlabeled_dataset = unlabeled_dataset
        if peft_config is not None:
            model = wrap_with_peft(model, peft_config)
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, **kwargs)
        self.data_collator = SSLDataCollator(self.data_collator, truth_column=args.truth_column)
        # hf_ssl losses are per-process means over rows, labeled and unlabeled alike. Left True (any model whose
        # forward takes **kwargs, e.g. BERT), the Trainer would pass num_items_in_batch (which BERT's head ignores),
        # multiply the labeled loss by the number of processes (λ in effect divided by the world size, gradients
        # scaled with it) and skip the division by gradient-accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._ssl_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._stream_loader: DataLoader | None = None
        self._stream_iter: Any = None
        self._stream_name: str | None = None
        self.unlabeled_batches_consumed = 0
        self.class_names: list[str] | None = None
        self.labeled_counts: np.ndarray | None = None
        self.card_datasets: list[str] = []
        self._validate_pools()
        self.head_init_record: dict[str, Any] | None = None
        if args.head_init == "linear_probe" and self.train_dataset is not None:
            self.head_init_record = self.init_head_from_probe()

    def init_head_from_probe(self) -> dict[str, Any]:
        """Fit the classification head as a linear probe on the labeled pool (``head_init="linear_probe"``).

        Every process fits the same probe on the whole labeled pool (eval mode, deterministic), so the ranks agree.
        """
        columns = [*self.model_input_columns(self.train_dataset), label_column_of(self.train_dataset)]
        loader = DataLoader(self.train_dataset.select_columns(columns), batch_size=self.args.per_device_eval_batch_size,
                            collate_fn=self.data_collator)
        record = init_head_from_probe(self.model, loader, self.num_labels)
        logger.info(f"head_init='linear_probe': {record}", main_process_only=True)
        return record

    # ----------------------------------------------------------------- validation
    @property
    def num_labels(self) -> int:
        """Number of classes of the model."""
        return int(self.model.config.num_labels)

    def model_input_columns(self, dataset: Dataset) -> list[str]:
        """Columns of ``dataset`` that the model's forward accepts (labels excluded)."""
        self._set_signature_columns_if_needed()
        return [c for c in dataset.column_names if c in self._signature_columns
                and c not in LABEL_COLUMNS and c not in SSL_COLUMNS and c != self.args.truth_column]

    def _validate_pools(self) -> None:
        """Check the model and the pools (`check_pools`) and align label names with the model config before anything
        trains."""
        labels = check_pools(self)
        if labels is None:
            return
        self.labeled_counts = np.bincount(labels, minlength=self.num_labels)
        config = self.model.config
        self.class_names = check_label_names(self.train_dataset, getattr(config, "id2label", None))
        if self.class_names:
            config.id2label = dict(enumerate(self.class_names))
            config.label2id = {n: i for i, n in enumerate(self.class_names)}
        else:
            self.class_names = [str(config.id2label[i]) for i in range(self.num_labels)]

    def _set_signature_columns_if_needed(self) -> None:
        """Keep hf_ssl's columns (pseudo-label targets, weights, row index) despite ``remove_unused_columns``."""
        super()._set_signature_columns_if_needed()
        for column in SSL_COLUMNS:
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    # ----------------------------------------------------------------- unlabeled stream
    def set_unlabeled_stream(self, dataset: Dataset, start_batch: int = 0, name: str = "unlabeled",
                             collate_fn: Any = None, extra_columns: tuple[str, ...] = ()) -> None:
        """Draw batches of ``dataset`` beside each labeled batch (see `next_unlabeled_batch`).

        Every process draws its own shard of each global batch, in a seeded order that resumes exactly.

        Parameters:
            dataset (`datasets.Dataset`): the rows to stream (unlabeled or pseudo-labeled pool).
            start_batch (`int`, defaults to `0`): batches already consumed (resume).
            name (`str`, defaults to `"unlabeled"`): a label for the stream, stored with the state.
            collate_fn (callable or `None`, defaults to `None`): collator of the stream (default: the trainer's
                data collator).
            extra_columns (`tuple[str, ...]`, defaults to ``()``): columns to keep besides the model inputs and
                hf_ssl's own.
        """
        keep = set(self.model_input_columns(dataset)) | set(SSL_COLUMNS) | {self.args.truth_column} | set(extra_columns)
        dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
        sampler = UnlabeledBatchSampler(
            len(dataset), self.args.unlabeled_batch_size(), seed=self.args.seed,
            num_replicas=self.args.world_size, rank=self.args.process_index, start_batch=start_batch,
        )
        self._stream_dataset = dataset
        self._stream_collate_fn = collate_fn
        # A private generator: creating the iterator must not consume the global RNG (exact resume).
        generator = torch.Generator().manual_seed(self.args.seed)
        self._stream_loader = DataLoader(dataset, batch_sampler=sampler,
                                         collate_fn=collate_fn or self.data_collator,
                                         generator=generator,
                                         num_workers=self.args.dataloader_num_workers,
                                         pin_memory=self.args.dataloader_pin_memory)
        self._stream_iter = None
        self._stream_name = name
        self.unlabeled_batches_consumed = start_batch

    def has_unlabeled_stream(self) -> bool:
        """Whether an unlabeled stream is set (see `set_unlabeled_stream`)."""
        return self._stream_loader is not None

    def clear_unlabeled_stream(self) -> None:
        """Stop drawing unlabeled batches; `next_unlabeled_batch` raises until a new stream is set."""
        self._stream_loader = None
        self._stream_iter = None

    def next_unlabeled_batch(self) -> dict[str, torch.Tensor]:
        """Next batch of the unlabeled stream, on the training device."""
        if self._stream_loader is None:
            raise RuntimeError("No unlabeled stream: call set_unlabeled_stream(dataset) first.")
        if self._stream_iter is None:
            self._stream_iter = iter(self._stream_loader)
        batch = next(self._stream_iter)
        self.unlabeled_batches_consumed += 1
        return self._prepare_inputs(batch)

    @staticmethod
    def split_ssl_columns(batch: dict[str, Any], truth_column: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split a batch into (model inputs, hf_ssl columns); the truth column goes to the second part."""
        names = (*SSL_COLUMNS, truth_column)
        return ({k: v for k, v in batch.items() if k not in names}, {k: v for k, v in batch.items() if k in names})

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The labeled loss of `Trainer.compute_loss`, on the batch without hf_ssl's own columns; methods add their
        unlabeled terms by overriding it."""
        inputs, _ = self.split_ssl_columns(inputs, self.args.truth_column)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def truth_labels(self) -> np.ndarray | None:
        """Hidden true labels of the unlabeled pool (monitoring only), or None."""
        column = self.args.truth_column
        if self.unlabeled_dataset is not None and column in self.unlabeled_dataset.column_names:
            return np.asarray(self.unlabeled_dataset[column])
        return None

    # ----------------------------------------------------------------- metrics
    def record_metric(self, name: str, value: float | torch.Tensor, mode: str | None = None) -> float:
        """Record an SSL metric for the next log line, averaged over processes and steps; returns the
        process average. Every process must call it (the value is gathered).

        Parameters:
            name (`str`): metric name in the log.
            value (`float` or `torch.Tensor`): a scalar.
            mode (`str` or `None`, defaults to `None`): ``"train"`` or ``"eval"`` log line; None: from whether the
                model is training.
        """
        if mode is None:
            mode = "train" if self.model.training else "eval"
        if mode not in self._ssl_metrics:
            raise ValueError(f"mode must be 'train', 'eval' or None, got {mode!r}.")
        tensor = torch.as_tensor(value, dtype=torch.float32, device=self.args.device).detach().reshape(1)
        if self.args.world_size > 1:
            tensor = self.accelerator.gather(tensor)
        mean = float(tensor.mean().item())
        self._ssl_metrics[mode][name].append(mean)
        return mean

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the SSL metrics averaged since the last such line to the Trainer's evaluation lines and training-loss
        lines (``loss``, or the final ``train_loss``); other lines (a method's records) leave them for the next."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        metrics = {}
        if mode == "eval" or "loss" in logs or "train_loss" in logs:
            prefix = "eval_" if mode == "eval" else ""
            metrics = {f"{prefix}{k}": sum(v) / len(v) for k, v in self._ssl_metrics[mode].items() if v}
            self._ssl_metrics[mode].clear()
        super().log({**logs, **metrics}, start_time)

    # ----------------------------------------------------------------- state
    def save_json(self, name: str, payload: Any) -> None:
        """Write ``payload`` as JSON to ``output_dir/name`` (atomically, on the saving process only)."""
        if self.args.should_save:
            write_text_atomic(self.args.output_dir, name, json.dumps(payload, indent=2))

    def ssl_state_dict(self) -> dict[str, Any]:
        """hf_ssl state stored in each checkpoint; subclasses extend it."""
        return {"method": self.method_name, "unlabeled_batches_consumed": self.unlabeled_batches_consumed,
                "stream": self._stream_name}

    def check_ssl_state(self, state: dict[str, Any]) -> None:
        """Raise a ValueError if ``state`` (of `ssl_state_dict`) was not written by a run this trainer can resume:
        another method here; subclasses add their own checks."""
        if state.get("method") != self.method_name:
            raise ValueError(
                f"resume_from_checkpoint points to a checkpoint of method {state.get('method')!r}, but this is a "
                f"{type(self).__name__} ({self.method_name!r}). Resume with the trainer that wrote it."
            )

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state written by `ssl_state_dict`, after `check_ssl_state`."""
        self.check_ssl_state(state)
        self.unlabeled_batches_consumed = int(state.get("unlabeled_batches_consumed", 0))
        if self._stream_loader is not None:
            self.set_unlabeled_stream(self._stream_dataset, start_batch=self.unlabeled_batches_consumed,
                                      name=self._stream_name or "unlabeled", collate_fn=self._stream_collate_fn,
                                      extra_columns=tuple(self._stream_dataset.column_names))

    # ----------------------------------------------------------------- model card
    def method_info(self) -> MethodInfo:
        """What the model card says about the method; subclasses whose method depends on the config override it."""
        return MethodInfo(name=self.method_name, title=self.method_title, description=self.method_description,
                          paper=self.paper, tags=list(self._tag_names))

    def card_statistics(self) -> tuple[list[str], list[list[Any]]]:
        """(header, rows) of the per-round / per-epoch pseudo-label table for the card."""
        return [], []

    def card_kept_model(self) -> str | None:
        """What the card says about which model of the run this is and why (None: nothing)."""
        return None

    def card_hyperparameters(self) -> dict[str, Any]:
        """Key hyperparameters shown on the card, as used: ``max_steps`` in place of ``num_train_epochs`` when it is
        set (it overrides the epochs)."""
        args = self.args
        length = {"max_steps": args.max_steps} if args.max_steps > 0 else {"num_train_epochs": args.num_train_epochs}
        return {"learning_rate": args.learning_rate, **length,
                "per_device_train_batch_size": args.per_device_train_batch_size,
                "unlabeled_batch_ratio": args.unlabeled_batch_ratio,
                "unlabeled_loss_weight": args.unlabeled_loss_weight, "head_init": args.head_init, "seed": args.seed}

    def model_card_data(self, model_name: str | None = None, dataset_name: str | list[str] | None = None,
                        eval_results: dict[str, float] | None = None, tags: str | list[str] | None = None,
                        language: str | list[str] | None = None, license: str | None = None,
                        finetuned_from: str | None = None, **_: Any) -> SSLModelCardData:
        """What the model card shows, filled from the trainer: the method, hyperparameters and statistics (the
        `method_info`, `card_hyperparameters` and `card_statistics` hooks), the pools and the model.

        Parameters:
            model_name (`str` or `None`, defaults to `None`): card title (default: the output folder's name).
            dataset_name (`str` or `list[str]` or `None`, defaults to `None`): dataset id(s) of the pools (default:
                ``card_datasets``).
            eval_results (`dict[str, float]` or `None`, defaults to `None`): final evaluation metrics (default: the
                last ``evaluate`` in the log history).
            tags (`str` or `list[str]` or `None`, defaults to `None`): extra Hub tags.
            language (`str` or `list[str]` or `None`, defaults to `None`): language code(s).
            license (`str` or `None`, defaults to `None`): license id.
            finetuned_from (`str` or `None`, defaults to `None`): base model id (default: the model config's
                ``_name_or_path``).
            **_: other `Trainer.create_model_card` arguments (``tasks``, ``dataset_tags``, ...) are ignored.
        """
        model = self.accelerator.unwrap_model(self.model)
        is_peft = hasattr(model, "peft_config")
        base = model.get_base_model() if is_peft else model
        header, rows = self.card_statistics()
        unlabeled = self.unlabeled_dataset
        return SSLModelCardData(
            model_name=model_name or os.path.basename(os.path.abspath(self.args.output_dir)),
            method=self.method_info(), architecture=type(base).__name__,
            base_model_name_or_path=finetuned_from or getattr(base.config, "_name_or_path", None), is_peft=is_peft,
            hyperparameters=self.card_hyperparameters(), stats_header=header, stats_rows=rows,
            kept_model=self.card_kept_model(),
            class_names=list(self.class_names or []),
            labeled_counts=self.labeled_counts.tolist() if self.labeled_counts is not None else [],
            n_unlabeled=len(unlabeled) if unlabeled is not None else 0, num_labels=self.num_labels,
            datasets=[dataset_name] if isinstance(dataset_name, str) else list(dataset_name or self.card_datasets),
            eval_results=eval_results if eval_results is not None else last_eval_metrics(self.state.log_history),
            hub_model_id=self.args.hub_model_id, tags=[tags] if isinstance(tags, str) else list(tags or []),
            language=language, license=license,
        )

    def create_model_card(self, model_name: str | None = None, dataset_name: str | list[str] | None = None,
                          eval_results: dict[str, float] | None = None, **kwargs: Any) -> None:
        """Write ``README.md`` in ``output_dir`` from hf_ssl's card template (used by ``push_to_hub``).

        Parameters:
            model_name, dataset_name, eval_results, **kwargs: as in `model_card_data` (``tags``, ``language``,
                ``license``, ``finetuned_from``).
        """
        if not self.is_world_process_zero():
            return
        self.write_model_card(self.args.output_dir, model_name=model_name, dataset_name=dataset_name,
                              eval_results=eval_results, **kwargs)

    def write_model_card(self, folder: str, **kwargs: Any) -> str:
        """Render the card of `model_card_data` (given ``kwargs``) into ``folder/README.md`` and return its text."""
        text = render_model_card(self.model_card_data(**kwargs))
        write_text_atomic(folder, "README.md", text)
        return text

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save like `Trainer.save_model`, plus the model card (also at each checkpoint)."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            self.write_model_card(output_dir or self.args.output_dir)
