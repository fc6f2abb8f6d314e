"""Configuration of `ConsistencyTrainer`."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from hf_ssl.augment.text import STRONG_OPS
from hf_ssl.graph.config import GraphConfig
from hf_ssl.methods.thresholds import THRESHOLD_STRATEGIES
from hf_ssl.trainer.base_config import SSLConfig
from hf_ssl.trainer.config_checks import check_graph_prior_weight

__all__ = ["ConsistencyConfig", "METHODS", "METHOD_DEFAULTS", "MethodDefaults"]


@dataclass(frozen=True)
class MethodDefaults:
    """What a consistency method uses where `ConsistencyConfig` leaves a field at None (values from its paper, but
    FixMatch's threshold: 0.7 rather than the paper's 0.95; docs/consistency.md#defaults says why).

    Parameters:
        threshold (`float`): confidence threshold τ of the ``fixed`` strategy (ceiling for FlexMatch).
        temperature (`float`): sharpening temperature of the soft targets.
        loss (`str`): consistency loss, one of ``"ce"``, ``"kl"``, ``"mse"``.
        uses_ema_teacher (`bool`): targets come from an EMA of the student.
    """

    threshold: float
    temperature: float
    loss: str
    uses_ema_teacher: bool


METHOD_DEFAULTS = {
    "fixmatch": MethodDefaults(threshold=0.7, temperature=1.0, loss="ce", uses_ema_teacher=False),
    "uda": MethodDefaults(threshold=0.8, temperature=0.4, loss="kl", uses_ema_teacher=False),
    "mean_teacher": MethodDefaults(threshold=0.0, temperature=1.0, loss="mse", uses_ema_teacher=True),
    "pi_model": MethodDefaults(threshold=0.0, temperature=1.0, loss="mse", uses_ema_teacher=False),
    "mixmatch": MethodDefaults(threshold=0.0, temperature=0.5, loss="mse", uses_ema_teacher=False),
}
METHODS = tuple(METHOD_DEFAULTS)
LOSSES = ("ce", "kl", "mse")


@dataclass
class ConsistencyConfig(SSLConfig, GraphConfig):
    """`SSLConfig` for consistency regularization (FixMatch, UDA, Mean Teacher, Π-model, MixMatch).

    Each step trains on a labeled batch plus μ× as many unlabeled rows: targets come from a weak view
    (from the student, or from an EMA teacher), the student is trained to match them on a strong view,
    and a threshold strategy decides how much each unlabeled row counts. Fields left at None take the
    method's default from `METHOD_DEFAULTS` (listed below as fixmatch / uda / mean_teacher / pi_model / mixmatch).
    Settings that contradict the method are rejected here; settings that have no effect with the others (e.g. a
    ``threshold`` with FreeMatch, a ``temperature`` with FixMatch) are warned about.

    Parameters:
        > Method

        method (`str`, *optional*, defaults to `"fixmatch"`):
            One of `"fixmatch"`, `"uda"`, `"mean_teacher"`, `"pi_model"`, `"mixmatch"`.
        threshold_strategy (`str`, *optional*, defaults to `"fixed"`):
            How much each unlabeled row counts: `"fixed"`, `"flexmatch"`, `"freematch"` or `"softmatch"`.
            MixMatch takes `"fixed"` only.
        threshold (`float` or `None`, *optional*, defaults to `None`):
            Confidence threshold τ in [0, 1] (`"fixed"`) or its ceiling (`"flexmatch"`). None: 0.7 / 0.8 / 0 / 0 / 0
            (FixMatch's paper: 0.95).
        temperature (`float` or `None`, *optional*, defaults to `None`):
            Sharpening temperature (> 0) of UDA's and MixMatch's soft targets. None: 1 / 0.4 / 1 / 1 / 0.5.
        consistency_loss (`str` or `None`, *optional*, defaults to `None`):
            `"ce"`, `"kl"` or `"mse"`. None: ce / kl / mse / mse / mse.
        use_ema_teacher (`bool` or `None`, *optional*, defaults to `None`):
            Targets from an EMA of the student's trainable weights. None: True for mean_teacher (which needs it),
            False otherwise.
        ema_decay (`float`, *optional*, defaults to `0.999`):
            EMA decay of the teacher, in [0, 1).
        eval_with_ema (`bool`, *optional*, defaults to `False`):
            Evaluate and predict with the EMA weights (the saved model stays the student).
        distribution_alignment (`bool`, *optional*, defaults to `False`):
            Rescale weak-view predictions by target prior / running model prior.
        alignment_target (`str`, *optional*, defaults to `"labeled"`):
            `"labeled"` (the labeled pool's class prior) or `"uniform"`.
        alignment_momentum (`float`, *optional*, defaults to `0.999`):
            EMA momentum of the running model prior, in [0, 1).
        threshold_momentum (`float`, *optional*, defaults to `0.999`):
            EMA momentum of FreeMatch's and SoftMatch's estimates, in [0, 1).
        flexmatch_warmup (`bool`, *optional*, defaults to `True`):
            FlexMatch's threshold warm-up.
        softmatch_n_sigma (`float`, *optional*, defaults to `2.0`):
            SoftMatch's κ (width of the Gaussian weight in standard deviations), > 0.
        unlabeled_loss_warmup_steps (`int`, *optional*, defaults to `0`):
            Ramp λ up from 0 over this many optimizer steps.
        unlabeled_loss_ramp (`str`, *optional*, defaults to `"linear"`):
            `"linear"` or `"sigmoid"` (exp(-5(1-t)²)) ramp.
        entropy_weight (`float`, *optional*, defaults to `0.0`):
            Weight (>= 0) of an entropy-minimisation term on the strong view's predictions. Not with MixMatch,
            whose sharpened label guess is its entropy minimisation.
        mixmatch_num_views (`int`, *optional*, defaults to `2`):
            K weak views averaged for MixMatch's label guess (>= 1).
        mixup_alpha (`float`, *optional*, defaults to `0.5`):
            Beta(α, α) parameter (> 0) of MixMatch's mixup.

        > Views

        augment_labeled (`bool`, *optional*, defaults to `True`):
            Train on the weak view of labeled rows (flip and crop for images; identity for text by default).
        augment_in (`str`, *optional*, defaults to `"auto"`):
            Where the unlabeled views are made: `"step"` (on the collated batch, on the training device),
            `"collator"` (in the unlabeled stream's collator, i.e. in DataLoader workers when there are any) or
            `"auto"` (the collator when training on CPU, the step on an accelerator).
        weak_augment (`str`, *optional*, defaults to `"identity"`):
            Text weak view: `"identity"` or `"token_dropout"`.
        weak_augment_prob (`float`, *optional*, defaults to `0.1`):
            Token-dropout rate of the weak text view.
        strong_augment_ops (`list[str]`, *optional*, defaults to all of `STRONG_OPS` but `"mlm"`):
            Text strong-view operations to choose from, among `hf_ssl.augment.text.STRONG_OPS` (`"mask"`,
            `"replace"`, `"word_dropout"`, `"span_deletion"`, `"local_shuffle"`, `"mlm"`; `"mlm"` needs the
            trainer's ``mlm_model=``).
        strong_augment_num_ops (`int`, *optional*, defaults to `2`):
            Text operations applied per row.
        strong_augment_prob (`float`, *optional*, defaults to `0.2`):
            Rate of each text operation.
        strong_view_prefix (`str`, *optional*, defaults to `"strong_"`):
            Columns ``<prefix><input>`` of the unlabeled pool (e.g. ``strong_input_ids`` from back-translations)
            are the strong view instead of augmenting.
        image_crop_padding (`float`, *optional*, defaults to `0.125`):
            Pad-and-crop padding as a fraction of the image side (weak image view).
        randaugment_n (`int`, *optional*, defaults to `2`):
            RandAugment operations per image (strong image view).
        randaugment_m (`int`, *optional*, defaults to `10`):
            RandAugment magnitude in [0, 30].
        cutout (`float`, *optional*, defaults to `0.5`):
            Side of the cutout square as a fraction of the image side.

        > Graph prior

        graph_prior_weight (`float`, *optional*, defaults to `0.5`):
            w in [0, 1] mixes, into every weak-view target, the class that label spreading over the model's own
            embeddings of both pools gives the row: (1 − w)·p + w·onehot(graph class), before the threshold
            (memory-smoothed pseudo-labels, as in CoMatch, Li et al., ICCV 2021). 0 turns it off (the methods as
            published); each build costs one embedding pass over both pools.
        graph_prior_every (`int`, *optional*, defaults to `0`):
            Epochs between graph rebuilds with the current model; 0 builds it once, before training, from the
            pretrained embeddings.
        n_neighbors, alpha, power, pooling, encode_batch_size, embedding_layer:
            That graph (see `GraphConfig`).

        > Contrastive adaptation

        contrastive_steps (`int`, *optional*, defaults to `0`):
            N > 0 first adapts the encoder to the unlabeled pool with N SimCLR steps on two strong views
            (`hf_ssl.methods.contrastive`), then refits the linear-probe head if ``head_init="linear_probe"``;
            done at the start of `train` unless resuming from a checkpoint. 0 turns it off.
        contrastive_batch_size (`int`, *optional*, defaults to `64`):
            Unlabeled rows per SimCLR step (>= 2; every other row of the batch is a negative).
        contrastive_learning_rate (`float` or `None`, *optional*, defaults to `None`):
            AdamW learning rate of the SimCLR steps. None: ``learning_rate``.
        contrastive_temperature (`float`, *optional*, defaults to `0.2`):
            Temperature (> 0) of the SimCLR loss.

        > Head

        head_init (`str`, *optional*, defaults to `"linear_probe"`):
            As in `SSLConfig` (`"random"` or `"linear_probe"`), with `"linear_probe"` as this trainer's default.
    """

    method: str = field(default="fixmatch", metadata={"help": f"One of {METHODS}."})
    threshold_strategy: str = field(default="fixed", metadata={"help": f"One of {THRESHOLD_STRATEGIES}."})
    threshold: float | None = field(default=None, metadata={"help": "Confidence threshold τ (None: method default)."})
    temperature: float | None = field(default=None, metadata={"help": "Sharpening temperature (None: default)."})
    consistency_loss: str | None = field(default=None, metadata={"help": f"One of {LOSSES} (None: default)."})
    use_ema_teacher: bool | None = field(default=None, metadata={"help": "Targets from an EMA teacher."})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay of the teacher, in [0, 1)."})
    eval_with_ema: bool = field(default=False, metadata={"help": "Evaluate with the EMA teacher's weights."})
    distribution_alignment: bool = field(default=False, metadata={"help": "Align weak-view predictions."})
    alignment_target: str = field(default="labeled", metadata={"help": "'labeled' or 'uniform' class prior."})
    alignment_momentum: float = field(default=0.999, metadata={"help": "EMA momentum of the model prior."})
    threshold_momentum: float = field(default=0.999, metadata={"help": "EMA momentum of FreeMatch/SoftMatch."})
    flexmatch_warmup: bool = field(default=True, metadata={"help": "FlexMatch threshold warm-up."})
    softmatch_n_sigma: float = field(default=2.0, metadata={"help": "SoftMatch Gaussian width κ."})
    unlabeled_loss_warmup_steps: int = field(default=0, metadata={"help": "Steps to ramp λ up from 0."})
    unlabeled_loss_ramp: str = field(default="linear", metadata={"help": "'linear' or 'sigmoid'."})
    entropy_weight: float = field(default=0.0, metadata={"help": "Weight of entropy minimisation (>= 0)."})
    mixmatch_num_views: int = field(default=2, metadata={"help": "MixMatch: weak views per unlabeled row."})
    mixup_alpha: float = field(default=0.5, metadata={"help": "MixMatch: Beta(α, α) of mixup (> 0)."})
    augment_labeled: bool = field(default=True, metadata={"help": "Train on the weak view of labeled rows."})
    augment_in: str = field(default="auto", metadata={"help": "'step', 'collator' or 'auto' (collator on CPU)."})
    weak_augment: str = field(default="identity", metadata={"help": "Text weak view: identity or token_dropout."})
    weak_augment_prob: float = field(default=0.1, metadata={"help": "Token-dropout rate of the weak text view."})
    strong_augment_ops: list[str] = field(
        default_factory=lambda: ["mask", "replace", "word_dropout", "span_deletion", "local_shuffle"],
        metadata={"help": f"Text strong-view operations, from {STRONG_OPS} (mlm needs mlm_model=)."},
    )
    strong_augment_num_ops: int = field(default=2, metadata={"help": "Text operations applied per row."})
    strong_augment_prob: float = field(default=0.2, metadata={"help": "Rate of each text operation."})
    strong_view_prefix: str = field(default="strong_", metadata={"help": "Prefix of precomputed strong views."})
    image_crop_padding: float = field(default=0.125, metadata={"help": "Pad-and-crop padding (fraction)."})
    randaugment_n: int = field(default=2, metadata={"help": "RandAugment ops per image."})
    randaugment_m: int = field(default=10, metadata={"help": "RandAugment magnitude (0-30)."})
    cutout: float = field(default=0.5, metadata={"help": "Cutout side as a fraction of the image side."})
    graph_prior_weight: float = field(default=0.5, metadata={
        "help": "Weight in [0, 1] of the label-spreading class mixed into weak-view targets (0: off)."})
    graph_prior_every: int = field(default=0, metadata={"help": "Epochs between graph rebuilds (0: once)."})
    contrastive_steps: int = field(default=0, metadata={
        "help": "SimCLR steps adapting the encoder to the unlabeled pool before training (0: off)."})
    contrastive_batch_size: int = field(default=64, metadata={"help": "Unlabeled rows per SimCLR step (>= 2)."})
    contrastive_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the SimCLR steps (None: learning_rate)."})
    contrastive_temperature: float = field(default=0.2, metadata={"help": "Temperature of the SimCLR loss (> 0)."})
    head_init: str = field(default="linear_probe", metadata={
        "help": "Classification head start: 'linear_probe' (LP-FT, fitted on the labeled pool) or 'random'."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}.")
        if self.threshold_strategy not in THRESHOLD_STRATEGIES:
            raise ValueError(
                f"threshold_strategy must be one of {THRESHOLD_STRATEGIES}, got {self.threshold_strategy!r}.")
        self._warn_ignored_settings()
        defaults = METHOD_DEFAULTS[self.method]
        self.threshold = defaults.threshold if self.threshold is None else self.threshold
        self.temperature = defaults.temperature if self.temperature is None else self.temperature
        self.consistency_loss = defaults.loss if self.consistency_loss is None else self.consistency_loss
        self.use_ema_teacher = defaults.uses_ema_teacher if self.use_ema_teacher is None else self.use_ema_teacher
        threshold = self.threshold
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and 0 <= threshold <= 1):
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}; e.g. threshold=0.95.")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}.")
        if self.consistency_loss not in LOSSES:
            raise ValueError(f"consistency_loss must be one of {LOSSES}, got {self.consistency_loss!r}.")
        for name in ("ema_decay", "alignment_momentum", "threshold_momentum"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value}; e.g. 0.999.")
        if self.alignment_target not in ("labeled", "uniform"):
            raise ValueError(f"alignment_target must be 'labeled' or 'uniform', got {self.alignment_target!r}.")
        if self.unlabeled_loss_ramp not in ("linear", "sigmoid"):
            raise ValueError(f"unlabeled_loss_ramp must be 'linear' or 'sigmoid', got {self.unlabeled_loss_ramp!r}.")
        if self.unlabeled_loss_warmup_steps < 0:
            raise ValueError(f"unlabeled_loss_warmup_steps must be >= 0, got {self.unlabeled_loss_warmup_steps}.")
        if not (math.isfinite(self.entropy_weight) and self.entropy_weight >= 0):
            raise ValueError(f"entropy_weight must be a finite number >= 0, got {self.entropy_weight}.")
        if self.mixmatch_num_views < 1:
            raise ValueError(f"mixmatch_num_views must be >= 1, got {self.mixmatch_num_views}.")
        if not (math.isfinite(self.mixup_alpha) and self.mixup_alpha > 0):
            raise ValueError(f"mixup_alpha must be > 0, got {self.mixup_alpha}.")
        if self.augment_in not in ("step", "collator", "auto"):
            raise ValueError(f"augment_in must be 'step', 'collator' or 'auto', got {self.augment_in!r}.")
        if self.softmatch_n_sigma <= 0:
            raise ValueError(f"softmatch_n_sigma must be > 0, got {self.softmatch_n_sigma}.")
        check_graph_prior_weight(self.graph_prior_weight)
        if self.graph_prior_every < 0:
            raise ValueError(f"graph_prior_every must be >= 0 epochs (0: once), got {self.graph_prior_every}.")
        self.check_graph()
        if self.contrastive_steps < 0:
            raise ValueError(f"contrastive_steps must be >= 0 (0: off), got {self.contrastive_steps}.")
        if self.contrastive_batch_size < 2:
            raise ValueError(f"contrastive_batch_size must be >= 2 (the other rows are the negatives), got "
                             f"{self.contrastive_batch_size}.")
        rate = self.contrastive_learning_rate
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"contrastive_learning_rate must be > 0 or None (learning_rate), got {rate}.")
        if not (math.isfinite(self.contrastive_temperature) and self.contrastive_temperature > 0):
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}; e.g. 0.2.")
        unknown = [op for op in self.strong_augment_ops if op not in STRONG_OPS]
        if unknown:
            raise ValueError(f"strong_augment_ops has unknown operations {unknown}; choose from {STRONG_OPS}.")
        self._check_method_settings()

    def _check_method_settings(self) -> None:
        """Reject settings that contradict the method, naming the fields and the fix."""
        if self.method == "mixmatch" and self.threshold_strategy != "fixed":
            raise ValueError(
                f"threshold_strategy={self.threshold_strategy!r} does not apply to method='mixmatch': MixMatch "
                "weights its guessed labels through mixup, not by an adaptive threshold. Set "
                "threshold_strategy='fixed', or use method='fixmatch' or 'uda' with an adaptive threshold.")
        if self.method == "mean_teacher" and not self.use_ema_teacher:
            raise ValueError(
                "method='mean_teacher' takes its targets from the EMA teacher, but use_ema_teacher=False. Leave "
                "use_ema_teacher unset (True), or use method='pi_model' for targets from the student itself.")
        if self.method == "mixmatch" and self.entropy_weight > 0:
            raise ValueError(
                f"entropy_weight={self.entropy_weight} does not apply to method='mixmatch': its sharpened label "
                "guess is its entropy minimisation, and it predicts only on mixed rows. Set entropy_weight=0, or "
                "use another method.")

    def _warn_ignored_settings(self) -> None:
        """Warn about settings that are given but have no effect with the others (before defaults fill them in)."""
        ignored = []
        if self.threshold is not None and self.threshold_strategy in ("freematch", "softmatch"):
            ignored.append(f"threshold={self.threshold} (threshold_strategy={self.threshold_strategy!r} sets its "
                           "own thresholds)")
        if self.temperature is not None and self.method not in ("uda", "mixmatch"):
            ignored.append(f"temperature={self.temperature} (only uda and mixmatch sharpen their targets)")
        if self.graph_prior_every and not self.graph_prior_weight:
            ignored.append(f"graph_prior_every={self.graph_prior_every} (graph_prior_weight=0 turns the prior off)")
        if self.contrastive_learning_rate is not None and not self.contrastive_steps:
            ignored.append(f"contrastive_learning_rate={self.contrastive_learning_rate} (contrastive_steps=0)")
        for setting in ignored:
            warnings.warn(f"ConsistencyConfig: {setting} has no effect.", UserWarning, stacklevel=4)

    @property
    def num_weak_views(self) -> int:
        """Weak views per unlabeled row: ``mixmatch_num_views`` for MixMatch's label guess, else 1."""
        return self.mixmatch_num_views if self.method == "mixmatch" else 1

    def unlabeled_weight(self, step: int) -> float:
        """λ at optimizer step ``step``, after the warm-up ramp."""
        if self.unlabeled_loss_warmup_steps <= 0:
            return self.unlabeled_loss_weight
        t = min(1.0, step / self.unlabeled_loss_warmup_steps)
        ramp = t if self.unlabeled_loss_ramp == "linear" else math.exp(-5.0 * (1.0 - t) ** 2)
        return self.unlabeled_loss_weight * ramp
