"""`ConsistencyTrainer`: FixMatch, UDA, Mean Teacher, Π-model and MixMatch as a `transformers.Trainer`.

Each training step takes the Trainer's labeled batch and μ× as many unlabeled rows from the shared
unlabeled stream, in a weak and a strong view. Targets come from the weak view (student or EMA teacher,
optionally distribution-aligned); a threshold strategy weights each unlabeled row; the student matches
the targets on the strong view (MixMatch: mixup of labeled rows and guessed labels). Labeled and
strong-view rows go through the model in one forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from transformers import TrainerCallback

from hf_ssl.data.collators import SSL_COLUMNS, ConsistencyCollator, concat_inputs, make_views
from hf_ssl.methods.contrastive import contrastive_adapt
from hf_ssl.methods.ema import EMATeacher
from hf_ssl.methods.losses import align_distribution, consistency_loss, entropy_loss, mix_graph_prior, mixup, sharpen
from hf_ssl.methods.thresholds import ConfidenceMasker
from hf_ssl.trainer.base_trainer import SSLTrainer
from hf_ssl.trainer.consistency_config import ConsistencyConfig
from hf_ssl.trainer.graph_spreading import GraphSpreadingMixin
from hf_ssl.trainer.model_card import MethodInfo
from hf_ssl.trainer.schedule import EpochSchedule

logger = get_logger(__name__)

__all__ = ["ConsistencyTrainer"]

PAPERS = {
    "fixmatch": ("FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence (Sohn et al., "
                 "NeurIPS 2020)", "https://arxiv.org/abs/2001.07685"),
    "uda": ("Unsupervised Data Augmentation for Consistency Training (Xie et al., NeurIPS 2020)",
            "https://arxiv.org/abs/1904.12848"),
    "mean_teacher": ("Mean teachers are better role models (Tarvainen & Valpola, NeurIPS 2017)",
                     "https://arxiv.org/abs/1703.01780"),
    "pi_model": ("Temporal Ensembling for Semi-Supervised Learning (Laine & Aila, ICLR 2017)",
                 "https://arxiv.org/abs/1610.02242"),
    "mixmatch": ("MixMatch: A Holistic Approach to Semi-Supervised Learning (Berthelot et al., NeurIPS 2019)",
                 "https://arxiv.org/abs/1905.02249"),
}
DESCRIPTIONS = {
    "fixmatch": "The weak view's prediction, when confident enough, is a hard pseudo-label for the strong view "
                "(cross-entropy).",
    "uda": "The weak view's sharpened prediction is a soft target for the strong view (KL divergence).",
    "mean_teacher": "An exponential moving average of the student predicts on the weak view; the student matches "
                    "it on the strong view.",
    "pi_model": "The student's predictions on two augmented views of the same row are pulled together.",
    "mixmatch": "Labels are guessed by averaging and sharpening predictions over several weak views; labeled and "
                "unlabeled rows are mixed up and trained on the mixed targets.",
}


def slow_momentum_warnings(config: ConsistencyConfig, max_steps: int) -> list[str]:
    """Warnings for the running estimates whose momentum leaves them mostly at their starting value after the run.

    Args:
        config: the trainer's config; only the estimates it uses are checked.
        max_steps: optimizer steps of the run.
    """
    used = []
    if config.use_ema_teacher or config.eval_with_ema:
        used.append(("ema_decay", config.ema_decay, "the EMA teacher's targets (use_ema_teacher) and evaluation "
                     "(eval_with_ema) barely see the training"))
    if config.threshold_strategy in ("freematch", "softmatch"):
        used.append(("threshold_momentum", config.threshold_momentum, f"{config.threshold_strategy}'s confidence "
                     "estimates stay near 1/num_classes, so almost every unlabeled row passes"))
    if config.distribution_alignment:
        used.append(("alignment_momentum", config.alignment_momentum,
                     "distribution alignment barely sees the model's predictions"))
    warnings = []
    for name, momentum, effect in used:
        kept = momentum ** max_steps
        if kept > 0.5:
            warnings.append(f"{name}={momentum} over {max_steps} steps leaves {kept:.0%} of its estimate at the "
                            f"starting value: {effect}. For a run this short set e.g. "
                            f"{name}={max(0.0, 1 - 10 / max_steps):.3f}.")
    return warnings


class _WarnSlowMomenta(TrainerCallback):
    """Warns at the start of training about `slow_momentum_warnings`."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for message in slow_momentum_warnings(args, state.max_steps):
            logger.warning(message, main_process_only=True)


class _EMAUpdate(TrainerCallback):
    """Moves the EMA teacher after every optimizer step."""

    def __init__(self, trainer: ConsistencyTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.ema.update(self.trainer.accelerator.unwrap_model(self.trainer.model))


class ConsistencyTrainer(GraphSpreadingMixin, SSLTrainer):
    """Consistency regularization as a `transformers.Trainer`; see `SSLTrainer` for the arguments.

    Extra keyword arguments:
        augmenter: object with ``weak(inputs)`` / ``strong(inputs)`` (default: `TextAugmenter` from the
            tokenizer for text models, `ImageAugmenter` from the image processor's mean/std for images).
        mlm_model: a masked-language model sharing the tokenizer's vocabulary, for the ``mlm`` text operation.

    After `train`, ``epoch_records`` holds per-epoch unlabeled statistics (mask rate, threshold, pseudo-label
    accuracy against the hidden truth column when present), and ``contrastive_record`` the SimCLR adaptation's
    losses when ``contrastive_steps`` > 0.
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
        unlabeled = self.unlabeled_dataset
        if "ssl_index" not in unlabeled.column_names:
            unlabeled = unlabeled.add_column("ssl_index", np.arange(len(unlabeled)).tolist())
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
            self.add_callback(_EMAUpdate(self))
        self.num_weak_views = config.mixmatch_num_views if config.method == "mixmatch" else 1
        strong_columns = tuple(c for c in unlabeled.column_names if c.startswith(config.strong_view_prefix or "\0"))
        self.augment_in = config.augment_in
        if self.augment_in == "auto":
            self.augment_in = "collator" if config.device.type == "cpu" else "step"
        collator = ConsistencyCollator(self.data_collator, self.augmenter if self.augment_in == "collator" else None,
                                       self.num_weak_views, config.strong_view_prefix, config.truth_column)
        self.set_unlabeled_stream(unlabeled, name="unlabeled", collate_fn=collator, extra_columns=strong_columns)
        self.epoch_records: list[dict[str, Any]] = []
        self._epoch_sums: dict[str, tuple[float, int]] = {}
        self.add_callback(_EpochRecord(self))
        self.add_callback(_WarnSlowMomenta())
        self.graph_labels: torch.Tensor | None = None  # class per unlabeled row from label spreading, -1 for none
        self.graph_records: list[dict[str, Any]] = []
        if config.graph_prior_weight > 0:
            schedule = EpochSchedule(self.build_graph_prior, self._last_graph_epoch, 0, config.graph_prior_every)
            self.add_callback(schedule)
        self.contrastive_record: dict[str, Any] | None = None
        if config.contrastive_steps and len(self.unlabeled_dataset) < config.contrastive_batch_size:
            raise ValueError(f"contrastive_batch_size={config.contrastive_batch_size} is larger than the unlabeled "
                             f"pool ({len(self.unlabeled_dataset)} rows); lower it or pass a larger pool.")

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`, preceded by the contrastive adaptation when ``contrastive_steps`` > 0 and not resuming
        (a checkpoint already holds the adapted weights)."""
        if self.args.contrastive_steps and not resume_from_checkpoint and self.contrastive_record is None:
            self.adapt_to_unlabeled_pool()
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def adapt_to_unlabeled_pool(self) -> dict[str, Any]:
        """SimCLR on two strong views of the unlabeled pool (`contrastive_adapt`), then the linear-probe head is
        refitted on the adapted features if ``head_init="linear_probe"``. Every process runs the same seeded steps.
        """
        config = self.args
        pool = self.unlabeled_dataset.select_columns(self.model_input_columns(self.unlabeled_dataset))
        generator = torch.Generator().manual_seed(config.seed)
        loader = torch.utils.data.DataLoader(pool, batch_size=config.contrastive_batch_size, shuffle=True,
                                             drop_last=True, generator=generator, collate_fn=self.data_collator)
        model = self.accelerator.unwrap_model(self.model)
        record = contrastive_adapt(model, loader, self.augmenter, steps=config.contrastive_steps,
                                   learning_rate=config.contrastive_learning_rate or config.learning_rate,
                                   temperature=config.contrastive_temperature, seed=config.seed)
        if config.head_init == "linear_probe":
            record["head_init"] = self.head_init_record = self.init_head_from_probe()
        self.contrastive_record = record
        # flushed with the first training log line (Trainer.train starts a fresh log history)
        self.record_metric("contrastive_loss_first", record["losses"][0][1], mode="train")
        self.record_metric("contrastive_loss_last", record["losses"][-1][1], mode="train")
        logger.info(f"contrastive adaptation: {record}", main_process_only=True)
        return record

    def _last_graph_epoch(self) -> int:
        return self.graph_records[-1]["epoch"] if self.graph_records else -1

    def _default_augmenter(self, mlm_model: Any) -> Any:
        """`ImageAugmenter` for pixel inputs, else `TextAugmenter` from the tokenizer."""
        config, processor = self.args, self.processing_class
        if "pixel_values" in self.train_dataset.column_names:
            from hf_ssl.augment.image import ImageAugmenter

            mean = getattr(processor, "image_mean", None)
            std = getattr(processor, "image_std", None)
            extra = {"mean": mean, "std": std} if mean is not None and std is not None else {}
            return ImageAugmenter(**extra, crop_padding=config.image_crop_padding, randaugment_n=config.randaugment_n,
                                  randaugment_m=config.randaugment_m, cutout=config.cutout)
        from hf_ssl.augment.text import TextAugmenter

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
        """Labeled cross-entropy + λ(t) × consistency on the unlabeled batch (+ entropy minimisation)."""
        inputs, _ = self.split_ssl_columns(inputs, self.args.truth_column)
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        config = self.args
        labels = inputs.pop("labels") if "labels" in inputs else inputs.pop("label")
        if config.augment_labeled:
            inputs = self.augmenter.weak(inputs)
        batch = self.next_unlabeled_batch()
        if "weak" not in batch:
            batch = make_views(batch, self.augmenter, self.num_weak_views, config.strong_view_prefix,
                               (*SSL_COLUMNS, config.truth_column))
        probs = self._weak_view_probs(model, batch["weak"], batch["ssl_index"])
        all_probs = self._gather(probs)  # every process keeps the same threshold state
        all_weights = self.masker(all_probs, self._gather(batch["ssl_index"])).to(probs.device)
        weights = all_weights[self._local_rows(probs.shape[0])]
        if config.method == "mixmatch":
            labeled_loss, unlabeled_loss, outputs = self._mixmatch(model, inputs, labels, batch["weak"], probs, weights)
            student_logits = None
        else:
            merged = concat_inputs([inputs, batch["strong"]], self._pad_token_id())
            outputs = model(**merged)
            labeled_logits, student_logits = outputs.logits.split([labels.shape[0], probs.shape[0]])
            labeled_loss = F.cross_entropy(labeled_logits.float(), labels)
            if config.method == "fixmatch":
                targets = F.one_hot(probs.argmax(dim=-1), probs.shape[-1]).float()
            elif config.method == "uda":
                targets = sharpen(probs, config.temperature)
            else:
                targets = probs
            unlabeled_loss = consistency_loss(student_logits, targets, config.consistency_loss, weights)
            outputs.logits = labeled_logits
        lam = config.unlabeled_weight(self.state.global_step)
        loss = labeled_loss + lam * unlabeled_loss
        if config.entropy_weight > 0 and student_logits is not None:
            loss = loss + config.entropy_weight * entropy_loss(student_logits)
        truth = batch.get(config.truth_column)
        self._record(labeled_loss, unlabeled_loss, lam, all_probs, all_weights,
                     None if truth is None else self._gather(truth))
        return (loss, outputs) if return_outputs else loss

    def _weak_view_probs(self, model: Any, weak_views: list[dict[str, Any]], index: torch.Tensor) -> torch.Tensor:
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
            if self.graph_labels is not None:
                graph = self.graph_labels[index.cpu()].to(probs.device)
                probs = mix_graph_prior(probs, graph, config.graph_prior_weight)
        return probs

    def build_graph_prior(self, epoch: int = 0) -> dict[str, Any]:
        """Spread the labels over a kNN graph of the current model's embeddings of both pools; the classes become
        the graph prior of the weak-view targets (``graph_prior_weight``).

        Args:
            epoch: the epoch this graph precedes (recorded).
        """
        spread = self.spread_labels()
        graph = spread.transduction_[len(self.train_dataset):]
        self.graph_labels = torch.as_tensor(graph, dtype=torch.long)
        record: dict[str, Any] = {"epoch": epoch, "rows": int((graph >= 0).sum())}
        truth = self.truth_labels()
        if truth is not None:
            record["graph_accuracy"] = float((graph == truth).mean())
        self.graph_records.append(record)
        self.log({f"ssl_graph_{k}": float(v) for k, v in record.items()})
        return record

    def _mixmatch(self, model: Any, inputs: dict[str, Any], labels: torch.Tensor, weak_views: list[dict[str, Any]],
                  probs: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """MixMatch: mixup over labeled rows (one-hot) and every weak view (sharpened guess), then the losses."""
        config = self.args
        n_labeled, n_classes = labels.shape[0], probs.shape[-1]
        guess = sharpen(probs, config.temperature)
        targets = torch.cat([F.one_hot(labels, n_classes).float(), guess.repeat(len(weak_views), 1)])
        row_weights = torch.cat([torch.ones(n_labeled, device=probs.device), weights.repeat(len(weak_views))])
        merged = concat_inputs([inputs, *weak_views], self._pad_token_id())
        if "pixel_values" in merged:
            key, values = "pixel_values", merged.pop("pixel_values")
        else:
            key, values = "inputs_embeds", self.accelerator.unwrap_model(model).get_input_embeddings()(
                merged.pop("input_ids"))
        mixed, mixed_targets, _, perm = mixup(values, torch.cat([targets, row_weights[:, None]], dim=1),
                                              config.mixup_alpha)
        mixed_targets, mixed_weights = mixed_targets[:, :-1], mixed_targets[:, -1]
        if "attention_mask" in merged:  # a mixed row attends to the union of its two sources' tokens
            merged["attention_mask"] = torch.maximum(merged["attention_mask"], merged["attention_mask"][perm])
        outputs = model(**merged, **{key: mixed})
        logits = outputs.logits
        labeled_loss = consistency_loss(logits[:n_labeled], mixed_targets[:n_labeled], "ce")
        unlabeled_loss = consistency_loss(logits[n_labeled:], mixed_targets[n_labeled:], config.consistency_loss,
                                          mixed_weights[n_labeled:])
        outputs.logits = logits[:n_labeled]
        return labeled_loss, unlabeled_loss, outputs

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
        """Turn the sums of the finished epoch into a record (called at each epoch end)."""
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
        if self.graph_labels is not None:
            state["graph_labels"] = self.graph_labels.clone()
            state["graph_records"] = self.graph_records
        return state

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        if state.get("consistency_method") != self.args.method:
            raise ValueError(
                f"resume_from_checkpoint holds a {state.get('consistency_method')!r} run but method is "
                f"{self.args.method!r}; resume with the same ConsistencyConfig.method."
            )
        self.masker.load_state_dict(state["thresholds"])
        self.model_prior = state["model_prior"].clone()
        self.epoch_records = list(state.get("epoch_records", []))
        self._epoch_sums = {k: (float(v[0]), int(v[1])) for k, v in state.get("epoch_sums", {}).items()}
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError("the checkpoint has no EMA teacher state; resume with the same use_ema_teacher.")
            self.ema.load_state_dict(state["ema"])
        if "graph_labels" in state:
            self.graph_labels = state["graph_labels"].clone()
            self.graph_records = list(state["graph_records"])

    def method_info(self) -> MethodInfo:
        """The configured method's title, description, paper and tags for the model card."""
        config = self.args
        return MethodInfo(
            name=self.method_name,
            title=f"consistency regularization ({config.method}, {config.threshold_strategy} threshold)",
            description=DESCRIPTIONS[config.method],
            paper=dict(zip(("title", "url"), PAPERS[config.method], strict=True)),
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


class _EpochRecord(TrainerCallback):
    """Closes the per-epoch unlabeled statistics."""

    def __init__(self, trainer: ConsistencyTrainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.close_epoch_record(state.epoch or 0.0)
