"""`ConsistencyTrainer`: FixMatch, UDA, Mean Teacher, Π-model and MixMatch as a `transformers.Trainer`.

Each training step takes the Trainer's labeled batch and μ× as many unlabeled rows from the shared
unlabeled stream, in weak and strong views. Targets come from the weak views (student or EMA teacher,
optionally distribution-aligned and mixed with the graph prior); a threshold strategy weights each unlabeled
row; the configured method (`hf_ssl.trainer.consistency_methods`) trains the student to match them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hf_ssl.augment.text import TextAugmenter
from hf_ssl.data.collators import SSL_COLUMNS, ConsistencyCollator, make_views
from hf_ssl.data.input_checks import check_float_pixels
from hf_ssl.methods.ema import EMATeacher
from hf_ssl.methods.losses import align_distribution, entropy_loss
from hf_ssl.methods.thresholds import ConfidenceMasker
from hf_ssl.trainer.base_trainer import SSLTrainer
from hf_ssl.trainer.consistency_callbacks import EMAUpdate, EpochRecord, WarnSlowMomenta
from hf_ssl.trainer.consistency_config import ConsistencyConfig
from hf_ssl.trainer.consistency_methods import CONSISTENCY_METHODS, ConsistencyStep
from hf_ssl.trainer.contrastive_adaptation import ContrastiveAdaptationMixin
from hf_ssl.trainer.graph_prior import GraphPriorMixin
from hf_ssl.trainer.model_card import MethodInfo
from hf_ssl.trainer.pass_rate_warnings import WarnLowMaskRate
from hf_ssl.trainer.preflight import check_strong_views, model_limits

__all__ = ["ConsistencyTrainer"]


class ConsistencyTrainer(GraphPriorMixin, ContrastiveAdaptationMixin, SSLTrainer):
    """Consistency regularization as a `transformers.Trainer`; see `SSLTrainer` for the arguments.

    The method's loss is `CONSISTENCY_METHODS[args.method]`; the graph prior (``graph_prior_weight``,
    `GraphPriorMixin`) and the contrastive adaptation (``contrastive_steps``, `ContrastiveAdaptationMixin`) live in
    their own modules.

    Extra keyword arguments:
        augmenter: object with ``weak(inputs)`` / ``strong(inputs)`` (default: `TextAugmenter` from the
            tokenizer for text models, `ImageAugmenter` from the image processor's mean/std for images).
        mlm_model: a masked-language model sharing the tokenizer's vocabulary, for the ``mlm`` text operation.

    Attributes:
        augment_in (`str`): where the unlabeled views are made, ``"step"`` or ``"collator"`` (``augment_in="auto"``
            resolved for the training device).
        epoch_records (`list[dict]`): per-epoch unlabeled statistics (mask rate, confidence, threshold,
            pseudo-label accuracy against the hidden truth column when present).
        ema (`EMATeacher` or `None`): the EMA teacher when ``use_ema_teacher`` or ``eval_with_ema``.
    """

    config_class = ConsistencyConfig
    method_name = "consistency"
    method_title = "consistency regularization"

    def __init__(self, *args: Any, augmenter: Any = None, mlm_model: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.unlabeled_dataset is None:
            raise ValueError("ConsistencyTrainer needs unlabeled_dataset= (the unlabeled pool).")
        config = self.args
        self.augmenter = augmenter if augmenter is not None else self._default_augmenter(mlm_model)
        check_strong_views(self.unlabeled_dataset, config.strong_view_prefix,
                           self.model_input_columns(self.train_dataset), model_limits(self.model))
        unlabeled = self.unlabeled_dataset.add_column("ssl_index", np.arange(len(self.unlabeled_dataset)).tolist())
        num_labels = self.num_labels
        self.masker = ConfidenceMasker(config.threshold_strategy, num_labels, len(unlabeled), config.threshold,
                                       config.threshold_momentum, config.flexmatch_warmup, config.softmatch_n_sigma)
        self.model_prior = torch.full((num_labels,), 1.0 / num_labels)
        if config.alignment_target == "labeled" and self.labeled_counts is not None:
            self.target_prior = torch.as_tensor(self.labeled_counts / self.labeled_counts.sum(), dtype=torch.float32)
        else:
            self.target_prior = torch.full((num_labels,), 1.0 / num_labels)
        self.ema: EMATeacher | None = None
        if config.use_ema_teacher or config.eval_with_ema:
            self.ema = EMATeacher(self.accelerator.unwrap_model(self.model), config.ema_decay)
            self.add_callback(EMAUpdate(self))
        self.augment_in = config.augment_in
        if self.augment_in == "auto":
            self.augment_in = "collator" if config.device.type == "cpu" else "step"
        strong_columns = tuple(c for c in unlabeled.column_names if c.startswith(config.strong_view_prefix or "\0"))
        collator = ConsistencyCollator(self.data_collator, self.augmenter if self.augment_in == "collator" else None,
                                       config.num_weak_views, config.strong_view_prefix, config.truth_column)
        self.set_unlabeled_stream(unlabeled, name="unlabeled", collate_fn=collator, extra_columns=strong_columns)
        self.epoch_records: list[dict[str, Any]] = []
        self._epoch_sums: dict[str, tuple[float, int]] = {}
        self.add_callback(EpochRecord(self))
        self.add_callback(WarnSlowMomenta())
        if self.args.unlabeled_loss_weight > 0:
            self.add_callback(WarnLowMaskRate())
        self.init_graph_prior()
        self.init_contrastive_adaptation()

    def _default_augmenter(self, mlm_model: Any) -> Any:
        """`ImageAugmenter` for pixel inputs, else `TextAugmenter` from the tokenizer."""
        config, processor = self.args, self.processing_class
        if "pixel_values" in self.train_dataset.column_names:
            from hf_ssl.augment.image import ImageAugmenter

            check_float_pixels(self.train_dataset, "train_dataset")
            check_float_pixels(self.unlabeled_dataset, "unlabeled_dataset")
            mean = getattr(processor, "image_mean", None)
            std = getattr(processor, "image_std", None)
            extra = {"mean": mean, "std": std} if mean is not None and std is not None else {}
            return ImageAugmenter(**extra, crop_padding=config.image_crop_padding, randaugment_n=config.randaugment_n,
                                  randaugment_m=config.randaugment_m, cutout=config.cutout)
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer is None or not hasattr(tokenizer, "all_special_ids"):
            raise ValueError(
                "ConsistencyTrainer needs processing_class= (the tokenizer) to augment text, or an augmenter=. "
                "Pass processing_class=tokenizer."
            )
        return TextAugmenter.from_tokenizer(
            tokenizer, weak=config.weak_augment, weak_prob=config.weak_augment_prob,
            strong_ops=config.strong_augment_ops, strong_num_ops=config.strong_augment_num_ops,
            strong_prob=config.strong_augment_prob, mlm_model=mlm_model)

    # ----------------------------------------------------------------- the step
    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Labeled cross-entropy + λ(t) × the method's consistency loss on an unlabeled batch (+ entropy
        minimisation when ``entropy_weight`` > 0)."""
        inputs, _ = self.split_ssl_columns(inputs, self.args.truth_column)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        config = self.args
        labels = inputs.pop("labels") if "labels" in inputs else inputs.pop("label")
        if config.augment_labeled:
            inputs = self.augmenter.weak(inputs)
        batch = self.next_unlabeled_views()
        probs = self.weak_view_probs(model, batch["weak"], batch["ssl_index"])
        all_probs = self._gather(probs)  # every process keeps the same threshold state
        all_weights = self.masker(all_probs, self._gather(batch["ssl_index"])).to(probs.device)
        weights = all_weights[self._local_rows(probs.shape[0])]
        unwrapped = self.accelerator.unwrap_model(model)
        step = ConsistencyStep(model=model, embed=lambda ids: unwrapped.get_input_embeddings()(ids),
                               pad_token_id=self._pad_token_id(), labeled=inputs, labels=labels, weak=batch["weak"],
                               strong=batch["strong"], probs=probs, weights=weights)
        losses = CONSISTENCY_METHODS[config.method].losses(step, config)
        lam = config.unlabeled_weight(self.state.global_step)
        loss = losses.labeled + lam * losses.unlabeled
        if config.entropy_weight > 0:
            loss = loss + config.entropy_weight * entropy_loss(losses.unlabeled_logits)
        truth = batch.get(config.truth_column)
        self._record(losses.labeled, losses.unlabeled, lam, all_probs, all_weights,
                     None if truth is None else self._gather(truth))
        return (loss, losses.outputs) if return_outputs else loss

    def next_unlabeled_views(self) -> dict[str, Any]:
        """The next unlabeled batch as ``{"weak": [inputs, ...], "strong": inputs, "ssl_index": ..., <truth>}``: the
        stream's collator made the views when ``augment_in == "collator"``; they are made here otherwise."""
        batch = self.next_unlabeled_batch()
        if self.augment_in == "step":
            batch = make_views(batch, self.augmenter, self.args.num_weak_views, self.args.strong_view_prefix,
                               (*SSL_COLUMNS, self.args.truth_column))
        return batch

    def weak_view_probs(self, model: Any, weak_views: list[dict[str, Any]], index: torch.Tensor) -> torch.Tensor:
        """Detached targets' base: mean softmax over weak views (teacher or student), aligned if asked, mixed with
        the graph's classes of the rows (``index``: their positions in the unlabeled pool) if asked."""
        config = self.args
        unwrapped = self.accelerator.unwrap_model(model)
        with torch.no_grad():
            views = []
            for view in weak_views:
                logits = self.ema(unwrapped, view).logits if config.use_ema_teacher else model(**view).logits
                views.append(F.softmax(logits.float(), dim=-1))
            probs = torch.stack(views).mean(dim=0)
            if config.distribution_alignment:
                mean = self._gather(probs).mean(dim=0).cpu()
                self.model_prior = config.alignment_momentum * self.model_prior + (1 - config.alignment_momentum) * mean
                probs = align_distribution(probs, self.model_prior.to(probs.device), self.target_prior.to(probs.device))
            probs = self.apply_graph_prior(probs, index)
        return probs

    # ----------------------------------------------------------------- helpers
    def _pad_token_id(self) -> int:
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        return int(getattr(tokenizer, "pad_token_id", None) or 0)

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All processes' rows (so threshold state is identical on every rank)."""
        return self.accelerator.gather(tensor.contiguous()) if self.args.world_size > 1 else tensor

    def _local_rows(self, n: int) -> slice:
        start = self.args.process_index * n if self.args.world_size > 1 else 0
        return slice(start, start + n)

    def _record(self, labeled_loss: torch.Tensor, unlabeled_loss: torch.Tensor, lam: float, probs: torch.Tensor,
                weights: torch.Tensor, truth: torch.Tensor | None) -> None:
        stats = {"labeled_loss": labeled_loss.detach(), "unlabeled_loss": unlabeled_loss.detach(),
                 "unlabeled_weight": lam, "mask_rate": weights.mean(),
                 "confidence": probs.max(dim=-1).values.mean()}
        thresholds = self.masker.class_thresholds()
        if thresholds is not None:
            stats["threshold_mean"] = thresholds.mean()
        if truth is not None and float(weights.sum()) > 0:  # accuracy of the pseudo-labels that counted
            correct = (probs.argmax(dim=-1) == truth).float()
            stats["pseudo_label_accuracy"] = (correct * weights).sum() / weights.sum()
        # probs, weights and truth are already gathered over processes: the condition above is the same on
        # every rank, so every rank records (and gathers) the same metrics.
        for name, value in stats.items():
            mean = self.record_metric(name, value)
            total, count = self._epoch_sums.get(name, (0.0, 0))
            self._epoch_sums[name] = (total + mean, count + 1)

    def close_epoch_record(self, epoch: float) -> None:
        """Turn the sums of the finished epoch into a record (called at each epoch end by `EpochRecord`)."""
        if self._epoch_sums:
            self.epoch_records.append({"epoch": round(epoch, 2),
                                       **{k: total / count for k, (total, count) in self._epoch_sums.items()}})
        self._epoch_sums = {}

    # ----------------------------------------------------------------- evaluation with the EMA teacher
    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Trainer.evaluate`, with the EMA weights when ``eval_with_ema``."""
        if self.ema is None or not self.args.eval_with_ema:
            return super().evaluate(*args, **kwargs)
        with self.ema.swapped_in(self.accelerator.unwrap_model(self.model)):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.predict`, with the EMA weights when ``eval_with_ema``."""
        if self.ema is None or not self.args.eval_with_ema:
            return super().predict(*args, **kwargs)
        with self.ema.swapped_in(self.accelerator.unwrap_model(self.model)):
            return super().predict(*args, **kwargs)

    # ----------------------------------------------------------------- state and card
    def ssl_state_dict(self) -> dict[str, Any]:
        state = super().ssl_state_dict() | {
            "consistency_method": self.args.method, "thresholds": self.masker.state_dict(),
            "model_prior": self.model_prior.clone(), "epoch_records": self.epoch_records,
            "epoch_sums": {k: list(v) for k, v in self._epoch_sums.items()}}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def check_ssl_state(self, state: dict[str, Any]) -> None:
        super().check_ssl_state(state)
        if state.get("consistency_method") != self.args.method:
            raise ValueError(
                f"resume_from_checkpoint holds a {state.get('consistency_method')!r} run but method is "
                f"{self.args.method!r}; resume with the same ConsistencyConfig.method."
            )
        if self.ema is not None and "ema" not in state:
            raise ValueError("the checkpoint has no EMA teacher state; resume with the same use_ema_teacher.")

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        self.masker.load_state_dict(state["thresholds"])
        self.model_prior = state["model_prior"].clone()
        self.epoch_records = list(state.get("epoch_records", []))
        self._epoch_sums = {k: (float(v[0]), int(v[1])) for k, v in state.get("epoch_sums", {}).items()}
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])

    def method_info(self) -> MethodInfo:
        """The configured method's title, description, paper and tags for the model card."""
        config = self.args
        method = CONSISTENCY_METHODS[config.method]
        return MethodInfo(
            name=self.method_name,
            title=f"consistency regularization ({config.method}, {config.threshold_strategy} threshold)",
            description=method.description, paper=dict(method.paper),
            tags=[*self._tag_names, "consistency-regularization", config.method])

    def card_hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return super().card_hyperparameters() | {
            "method": args.method, "threshold_strategy": args.threshold_strategy, "threshold": args.threshold,
            "temperature": args.temperature, "consistency_loss": args.consistency_loss,
            "use_ema_teacher": args.use_ema_teacher, "distribution_alignment": args.distribution_alignment,
            "unlabeled_loss_warmup_steps": args.unlabeled_loss_warmup_steps, "entropy_weight": args.entropy_weight,
            "graph_prior_weight": args.graph_prior_weight} | (
                {"contrastive_steps": args.contrastive_steps} if args.contrastive_steps else {})

    def card_statistics(self) -> tuple[list[str], list[list[Any]]]:
        header = ["epoch", "unlabeled rows used (mask rate)", "mean confidence", "mean threshold",
                  "pseudo-label accuracy (hidden truth)"]

        def fmt(value: Any) -> str:
            return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

        rows = [[rec["epoch"], fmt(rec.get("mask_rate")), fmt(rec.get("confidence")), fmt(rec.get("threshold_mean")),
                 fmt(rec.get("pseudo_label_accuracy"))] for rec in self.epoch_records]
        return header, rows
