"""Rounds inside one `Trainer` run: the round mechanics of `SelfTrainingTrainer`.

The rounds of a run are consecutive spans of ``steps_per_round`` optimizer steps of a single `Trainer.train`, so every
Trainer mechanism sees one run: one ``global_step`` counter and one logging stream, ``output_dir/checkpoint-N``
checkpoints (found by ``get_last_checkpoint``, rotated by ``save_total_limit``), one best model for
``load_best_model_at_end``, ``on_train_begin`` / ``on_train_end`` once, and a callback's
``control.should_training_stop`` (e.g. `EarlyStoppingCallback`) ending the run. Callbacks also receive
``on_round_begin`` / ``on_round_end`` (`RoundCallback`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler, TrainerControl, TrainerState
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

__all__ = ["RoundCallback", "RoundLoopMixin", "call_round_event", "restart_every"]

ROUNDS_FILE = "self_training_rounds.json"


class RoundCallback(TrainerCallback):
    """A `TrainerCallback` that also hears the rounds of a `SelfTrainingTrainer`.

    Any callback with an ``on_round_begin`` or ``on_round_end`` method receives them (subclassing is optional); plain
    `TrainerCallback`s are unaffected. Both get the Trainer's usual keyword arguments (``model``, ``optimizer``,
    ``lr_scheduler``, ``train_dataloader``, ...) and may return the ``control``, as the Trainer's events do. A run
    sees ``on_train_begin``, then for each round ``on_round_begin`` (before the round's first step) and
    ``on_round_end`` (once the round's record is complete: after its evaluation and pseudo-labeling), then
    ``on_train_end``.
    """

    def on_round_begin(self, args: Any, state: TrainerState, control: TrainerControl, round: int,
                       rounds: list[dict[str, Any]], **kwargs: Any) -> None:
        """Round ``round`` starts: the model, optimizer and training stream are set for it; ``rounds`` holds the
        records of the rounds before it (``trainer.rounds``)."""

    def on_round_end(self, args: Any, state: TrainerState, control: TrainerControl, round: int,
                     record: dict[str, Any], **kwargs: Any) -> None:
        """Round ``round`` ended; ``record`` is its entry of ``trainer.rounds``."""


def call_round_event(handler: CallbackHandler, event: str, args: Any, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> TrainerControl:
    """Call ``event`` on every callback of ``handler`` that defines it, as `CallbackHandler.call_event` does; return
    the control."""
    for callback in handler.callbacks:
        method = getattr(callback, event, None)
        if method is None:
            continue
        result = method(args, state, control, model=handler.model, processing_class=handler.processing_class,
                        optimizer=handler.optimizer, lr_scheduler=handler.lr_scheduler,
                        train_dataloader=handler.train_dataloader, eval_dataloader=handler.eval_dataloader, **kwargs)
        if result is not None:
            control = result
    return control


def restart_every(fn: Callable[[int], float], period: int) -> Callable[[int], float]:
    """The learning-rate factor ``fn`` restarted every ``period`` steps."""

    def factor(step: int) -> float:
        return fn(step % period)

    return factor


class _RoundEvents(TrainerCallback):
    """Hands the Trainer's events to the round loop of its trainer; first in the callback list, so that a round has
    begun before any other callback's ``on_step_begin`` and its record is complete before their ``on_train_end``."""

    def __init__(self, trainer: RoundLoopMixin) -> None:
        self.trainer = trainer

    def on_step_begin(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.trainer.round_step_begin(state)

    def on_step_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.trainer.round_step_end(state, control)

    def on_evaluate(self, args: Any, state: TrainerState, control: TrainerControl, metrics: dict[str, float],
                    **kwargs: Any) -> None:
        self.trainer.round_evaluated(state, metrics)

    def on_train_end(self, args: Any, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.trainer.round_train_end(state)


class RoundLoopMixin:
    """Rounds of ``steps_per_round`` optimizer steps inside one `Trainer.train`.

    A round is ``num_train_epochs`` over the labeled pool (or ``max_steps``); the run has ``args.max_rounds + 1``
    rounds at most. Each round after the first starts with an empty optimizer state and the learning-rate schedule
    restarted (a ``LambdaLR`` schedule, as every named ``lr_scheduler_type`` but ``reduce_lr_on_plateau``, runs per
    round with its warm-up; other schedules, and one passed in ``optimizers``, run over the whole run). At a round's
    last step the round is recorded and evaluated (``args.eval_each_round``) and, when checkpoints are on
    (``save_strategy`` ``"steps"`` or ``"epoch"``), checkpointed, so that every round's final model is a candidate
    for ``load_best_model_at_end``.

    The trainer implements `begin_round` and `end_round`, and may add fields to the records with `round_summary`.
    Put it before `SSLTrainer` in the bases and call `init_rounds` in ``__init__``.

    Attributes:
        rounds (`list[dict]`): one record per round: ``round``, ``global_step`` (its last step), ``train_loss``,
            ``eval`` (the evaluation at its last step) and the trainer's own fields; also written to
            ``output_dir/self_training_rounds.json``.
        round (`int`): the round in progress (or last run); -1 before the first.
        termination_condition (`str` or `None`): why the run stopped: what `end_round` returned, or
            `"training_stopped"` when a callback (e.g. `EarlyStoppingCallback`) set ``control.should_training_stop``.
        steps_per_round (`int`): optimizer steps in a round.
    """

    steps_per_round: int = 0

    def init_rounds(self) -> None:
        """Start with no round run, and hear the Trainer's events."""
        self.reset_rounds()
        self.callback_handler.callbacks.insert(0, _RoundEvents(self))

    def reset_rounds(self) -> None:
        """Forget the rounds run (a new run starts)."""
        self.round = -1
        self.rounds: list[dict[str, Any]] = []
        self.termination_condition: str | None = None
        self._round_loss_start = 0.0
        self._last_eval: tuple[int, dict[str, float]] | None = None

    # ----------------------------------------------------------------- hooks of the trainer
    def begin_round(self, round: int) -> None:
        """Set the model and the training stream for ``round`` (called before its first step)."""
        raise NotImplementedError

    def end_round(self, record: dict[str, Any]) -> str | None:
        """Finish the round of ``record`` (at its last step, with the round's final model); return why the run stops
        here, or None to go on."""
        raise NotImplementedError

    def round_summary(self) -> dict[str, Any]:
        """Fields of the trainer added to the record of the round in progress."""
        return {}

    # ----------------------------------------------------------------- the run's length and schedule
    def set_initial_training_values(self, args: Any, dataloader: Any) -> tuple[int, int, int, int, int, int, int]:
        """The Trainer's values for one round, stretched over ``max_rounds + 1`` rounds."""
        epochs, per_epoch, examples, samples, batch, steps_in_epoch, max_steps = super().set_initial_training_values(
            args, dataloader)
        self.steps_per_round = max_steps
        rounds = args.max_rounds + 1
        if epochs != sys.maxsize:
            epochs = math.ceil(max_steps * rounds / per_epoch)
        return epochs, per_epoch, examples, samples * rounds, batch, steps_in_epoch, max_steps * rounds

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """The Trainer's scheduler for one round, restarted every round (a ``LambdaLR``)."""
        if self.lr_scheduler is not None:
            return self.lr_scheduler
        scheduler = super().create_scheduler(self.steps_per_round or num_training_steps, optimizer)
        if isinstance(scheduler, LambdaLR):
            scheduler.lr_lambdas = [restart_every(fn, self.steps_per_round) for fn in scheduler.lr_lambdas]
        return scheduler

    # ----------------------------------------------------------------- the Trainer's events
    def round_step_begin(self, state: TrainerState) -> None:
        """Before a step: end the last round for the callbacks and begin the next one, when the step starts it."""
        round = state.global_step // self.steps_per_round
        if round <= self.round:
            return
        if self.rounds and self.rounds[-1]["round"] == self.round:
            self._round_event("on_round_end", round=self.round, record=self.rounds[-1])
        self.round = round
        self._drain_loss()
        self._round_loss_start = self._loss_total
        if round > 0:
            self.optimizer.state.clear()
        self.begin_round(round)
        self._round_event("on_round_begin", round=round, rounds=self.rounds)

    def round_step_end(self, state: TrainerState, control: TrainerControl) -> None:
        """After a step: at the round's last step, record the round, let the trainer end it, and ask the Trainer to
        evaluate and checkpoint there (unless its epoch strategy does so at this step anyway)."""
        if state.global_step != (self.round + 1) * self.steps_per_round:
            return
        record = self._round_record(state)
        termination = self.end_round(record)
        if termination is not None:
            self.termination_condition = termination
            control.should_training_stop = True
        self.rounds.append(record)
        self._write_rounds()
        args = self.args
        epoch_end = float(state.epoch).is_integer()
        if args.eval_each_round and self.eval_dataset is not None and not (
                args.eval_strategy == IntervalStrategy.EPOCH and epoch_end):
            control.should_evaluate = True
        if args.save_strategy == SaveStrategy.STEPS or (args.save_strategy == SaveStrategy.EPOCH and not epoch_end):
            control.should_save = True

    def round_evaluated(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """An evaluation during training: the evaluation of the round that ended at this step, if one did."""
        if not self.is_in_train:
            return
        self._last_eval = (state.global_step, dict(metrics))
        record = self.rounds[-1] if self.rounds else None
        if record is not None and record["global_step"] == state.global_step and "eval" not in record:
            record["eval"] = dict(metrics)
            self._write_rounds()

    def round_train_end(self, state: TrainerState) -> None:
        """The run ends: record a round cut short by a callback, and end the last round for the callbacks."""
        if self.round < 0:
            return
        if not self.rounds or self.rounds[-1]["round"] != self.round:
            record = self._round_record(state)
            if self._last_eval is not None and self._last_eval[0] == state.global_step:
                record["eval"] = self._last_eval[1]
            self.rounds.append(record)
        if self.termination_condition is None:
            self.termination_condition = "training_stopped"
        self._write_rounds()
        self._round_event("on_round_end", round=self.round, record=self.rounds[-1])

    # ----------------------------------------------------------------- records and state
    def _round_record(self, state: TrainerState) -> dict[str, Any]:
        self._drain_loss()
        steps = state.global_step - self.round * self.steps_per_round
        return {"round": self.round, "global_step": state.global_step,
                "train_loss": (self._loss_total - self._round_loss_start) / max(steps, 1), **self.round_summary()}

    def _write_rounds(self) -> None:
        self.save_json(ROUNDS_FILE, {"rounds": self.rounds, "termination_condition": self.termination_condition})

    def _round_event(self, event: str, **kwargs: Any) -> None:
        self.control = call_round_event(self.callback_handler, event, self.args, self.state, self.control, **kwargs)

    def ssl_state_dict(self) -> dict[str, Any]:
        return super().ssl_state_dict() | {
            "round": self.round, "rounds_json": json.dumps(self.rounds), "round_loss_start": self._round_loss_start,
            "termination_condition": self.termination_condition or ""}

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        self.round = int(state["round"])
        self.rounds = json.loads(state["rounds_json"])
        self._round_loss_start = float(state["round_loss_start"])
        self.termination_condition = state["termination_condition"] or None
