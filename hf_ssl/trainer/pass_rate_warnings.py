"""Warnings for runs whose threshold lets (almost) no unlabeled row count, naming the setting to change.

A threshold that no unlabeled row reaches turns a semi-supervised run into labeled-only training without an error.
These callbacks read the Trainer's log lines (``mask_rate`` of `ConsistencyTrainer`, the pseudo-label counts of
`SelfTrainingTrainer` and `LabelPropagationTrainer`) and warn once per run (mask rate) or per pseudo-labeling pass.
A `ConsistencyTrainer` with ``unlabeled_loss_weight=0`` trains on labeled rows alone by choice and does not warn.
"""

from __future__ import annotations

from typing import Any

from accelerate.logging import get_logger
from transformers import TrainerCallback

logger = get_logger(__name__)

__all__ = ["LOW_PASS_FRACTION", "MASK_RATE_PATIENCE_STEPS", "WarnFewPseudoLabels", "WarnLowMaskRate",
           "few_pseudo_labels_message", "low_mask_rate_message"]

LOW_PASS_FRACTION = 0.01
"""Below this fraction of the unlabeled rows passing, a run warns."""
MASK_RATE_PATIENCE_STEPS = 50
"""Optimizer steps of a mask rate below `LOW_PASS_FRACTION` before `WarnLowMaskRate` warns (or the whole run if
shorter)."""


def low_mask_rate_message(config: Any, steps: int, highest: float) -> str:
    """The warning of a `ConsistencyTrainer` run whose ``mask_rate`` stayed below `LOW_PASS_FRACTION`.

    Parameters:
        config (`ConsistencyConfig`): the trainer's config.
        steps (`int`): optimizer steps the low mask rate lasted.
        highest (`float`): the highest mask rate logged over those steps.
    """
    strategy = config.threshold_strategy
    if strategy == "freematch":
        fix = (f"lower threshold_momentum (now {config.threshold_momentum}) so that FreeMatch's thresholds follow "
               "the model's confidence sooner, or use threshold_strategy='softmatch'")
    else:
        fix = (f"lower threshold (now {config.threshold}), or use threshold_strategy='freematch' or 'softmatch' "
               "(thresholds that follow the model's confidence)")
    return (f"ConsistencyTrainer: almost no unlabeled row passed the threshold for {steps} optimizer steps (mask_rate "
            f"at most {highest:.3f} with method={config.method!r}, threshold_strategy={strategy!r}): the unlabeled "
            f"loss is (almost) zero and training is labeled-only. To use the unlabeled pool, {fix}.")


class WarnLowMaskRate(TrainerCallback):
    """Warns once per run when the logged ``mask_rate`` stays below `LOW_PASS_FRACTION` for
    `MASK_RATE_PATIENCE_STEPS` optimizer steps, or for the whole of a shorter run (`low_mask_rate_message`)."""

    def __init__(self) -> None:
        self.low_since: int | None = None
        self.highest = 0.0
        self.warned = False
        self.start_step = self.last_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.low_since, self.highest, self.warned = None, 0.0, False
        self.start_step = self.last_step = state.global_step

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.warned or not logs or "mask_rate" not in logs:
            return
        if logs["mask_rate"] >= LOW_PASS_FRACTION:
            self.low_since, self.highest = None, 0.0
        else:
            self.low_since = self.last_step if self.low_since is None else self.low_since
            self.highest = max(self.highest, float(logs["mask_rate"]))
            if state.global_step - self.low_since >= MASK_RATE_PATIENCE_STEPS:
                self._warn(args, state.global_step - self.low_since)
        self.last_step = state.global_step

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.warned and self.low_since == self.start_step and self.last_step > self.start_step:
            self._warn(args, self.last_step - self.start_step)

    def _warn(self, args: Any, steps: int) -> None:
        self.warned = True
        logger.warning(low_mask_rate_message(args, steps, self.highest), main_process_only=True)


def few_pseudo_labels_message(config: Any, selected: int, pool_size: int, logs: dict[str, float]) -> str:
    """The warning of a pseudo-labeling pass that kept fewer than `LOW_PASS_FRACTION` of the unlabeled pool.

    Parameters:
        config (`SelfTrainingConfig` or `LabelPropagationConfig`): the trainer's config.
        selected (`int`): pseudo-labels kept.
        pool_size (`int`): rows of the unlabeled pool.
        logs (`dict[str, float]`): the pass's log line (``ssl_round`` and ``ssl_pool_mean_confidence`` for
            self-training, ``ssl_propagation_epoch`` for label propagation).
    """
    share = f"{selected} of {pool_size} unlabeled rows ({selected / max(pool_size, 1):.1%})"
    if "ssl_round" in logs:
        caps = ""
        if config.k_per_class is not None or config.class_fraction is not None:
            caps = " (k_per_class and class_fraction only cap the rows that pass it)"
        consequence = ("No round follows (no new pseudo-label)." if selected == 0
                       else "The next round trains on almost no pseudo-label.")
        return (f"SelfTrainingTrainer: round {int(logs['ssl_round'])}'s model gives {share} a confidence of at "
                f"least threshold={config.threshold}; the model's mean confidence on the pool is "
                f"{logs.get('ssl_pool_mean_confidence', float('nan')):.3f}. {consequence} Lower threshold{caps}.")
    fix = f"raise n_neighbors (now {config.n_neighbors}): rows connected to no labeled row get no label"
    if config.min_certainty > 0:
        fix = f"lower min_certainty (now {config.min_certainty}), or {fix}"
    return (f"LabelPropagationTrainer: the propagation before epoch {int(logs.get('ssl_propagation_epoch', 0))} "
            f"pseudo-labels {share}, so training is almost labeled-only. To use the unlabeled pool, {fix}.")


class WarnFewPseudoLabels(TrainerCallback):
    """Warns when a pseudo-labeling pass logs (under ``count_key``) fewer than `LOW_PASS_FRACTION` of the unlabeled
    pool as pseudo-labeled (`few_pseudo_labels_message`).

    Parameters:
        count_key (`str`): the log key of the pass's pseudo-label count (``"ssl_selected"`` for self-training,
            ``"ssl_propagation_pseudo_labeled"`` for label propagation).
        pool_size (`int`): rows of the unlabeled pool.
    """

    def __init__(self, count_key: str, pool_size: int) -> None:
        self.count_key = count_key
        self.pool_size = pool_size

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if not logs or self.count_key not in logs:
            return
        selected = int(logs[self.count_key])
        if selected < LOW_PASS_FRACTION * self.pool_size:
            logger.warning(few_pseudo_labels_message(args, selected, self.pool_size, logs), main_process_only=True)
