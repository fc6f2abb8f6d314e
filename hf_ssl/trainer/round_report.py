"""Round lines on the console: what each round of a `SelfTrainingTrainer` trains on, and how it ended.

`RoundReport` is one of `SelfTrainingTrainer`'s default callbacks, as `ProgressCallback` is one of `Trainer`'s: it
writes through ``tqdm`` so that the progress bar stays whole, on the main process only, and is silent when
``log_level`` is ``"error"`` or ``"critical"``. ``trainer.remove_callback(RoundReport)`` turns it off.
"""

from __future__ import annotations

import logging
from typing import Any

from tqdm.auto import tqdm
from transformers.trainer_callback import TrainerControl, TrainerState

from hf_ssl.trainer.round_loop import RoundCallback

__all__ = ["RoundReport", "round_begin_line", "round_end_line", "write_round_line"]


def _rows(n: int) -> str:
    return f"{n:,}"


def _round_steps(state: TrainerState, args: Any, round: int) -> tuple[int, int]:
    per_round = state.max_steps // (args.max_rounds + 1) if state.max_steps else 0
    return round * per_round + 1, (round + 1) * per_round


def write_round_line(args: Any, state: TrainerState, line: str) -> None:
    """Print ``line`` on the console through ``tqdm`` (the progress bar stays whole), on the main process only,
    unless ``log_level`` is ``"error"`` or ``"critical"``."""
    if state.is_world_process_zero and args.get_process_log_level() <= logging.WARNING:
        tqdm.write(line)


def round_begin_line(args: Any, state: TrainerState, round: int, pseudo_labeled: int) -> str:
    """The line printed when ``round`` begins.

    Parameters:
        args (`SelfTrainingConfig`): the run's config.
        state (`TrainerState`): the Trainer's state (``max_steps`` of the whole run).
        round (`int`): the round that begins.
        pseudo_labeled (`int`): pseudo-labeled rows the round trains on (0 in round 0).
    """
    first, last = _round_steps(state, args, round)
    head = f"[round {round}/{args.max_rounds}] steps {first}-{last}: "
    if round == 0:
        return head + "labeled rows only (the labeled-only baseline of the run)."
    start = "the initial weights" if args.reset_model_each_round else "the previous round's model"
    return (head + f"labeled rows plus {_rows(pseudo_labeled)} pseudo-labeled rows, from {start} with a fresh "
            f"optimizer and learning-rate schedule. The logged loss now adds {args.unlabeled_loss_weight} x the "
            "pseudo-label loss and restarts from a reset model, so it jumps up at this step.")


def round_end_line(args: Any, record: dict[str, Any]) -> str:
    """The line printed when a round ends: its training loss, evaluation and safeguard check (``graph agreement``,
    when ``safeguard="graph"``), then the pseudo-labels it made.

    Parameters:
        args (`SelfTrainingConfig`): the run's config.
        record (`dict`): the round's entry of ``trainer.rounds``.
    """
    parts = [f"train loss {record['train_loss']:.4f}"]
    evaluation = record.get("eval") or {}
    parts += [f"{key} {value:.4f}" for key, value in evaluation.items()
              if key.startswith("eval_") and key not in ("eval_loss", "eval_runtime", "eval_samples_per_second",
                                                         "eval_steps_per_second") and isinstance(value, float)]
    check = record.get("check")
    if check is not None:
        score = check["graph_agreement"]
        parts.append(f"graph agreement {'n/a' if score is None else f'{score:.4f}'}")
    line = f"[round {record['round']}/{args.max_rounds}] ended at step {record['global_step']}: " + ", ".join(parts)
    stats = record.get("pseudo_labels")
    if stats:
        line += (f"; pseudo-labels for the next round: {_rows(stats['selected'])} with confidence >= "
                 f"{args.threshold} ({_rows(stats['new'])} new), mean confidence {stats['mean_confidence']:.3f}")
        if "pseudo_label_accuracy" in stats:
            line += f", accuracy against the hidden truth {stats['pseudo_label_accuracy']:.3f}"
    return line + "."


class RoundReport(RoundCallback):
    """Prints `round_begin_line` and `round_end_line` for every round (see the module docstring)."""

    def on_round_begin(self, args: Any, state: TrainerState, control: TrainerControl, round: int,
                       rounds: list[dict[str, Any]], **kwargs: Any) -> None:
        pseudo_labeled = (rounds[-1].get("pseudo_labels") or {}).get("selected", 0) if round > 0 and rounds else 0
        write_round_line(args, state, round_begin_line(args, state, round, pseudo_labeled))

    def on_round_end(self, args: Any, state: TrainerState, control: TrainerControl, round: int,
                     record: dict[str, Any], **kwargs: Any) -> None:
        write_round_line(args, state, round_end_line(args, record))
