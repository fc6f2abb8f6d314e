"""A script switched from `transformers.Trainer` to an hf_ssl trainer keeps every Trainer mechanism, for each of the
three trainers on a tiny random BERT: one global step counter and one logging stream (and one TensorBoard event file),
``eval_strategy="steps"`` with ``load_best_model_at_end``, `EarlyStoppingCallback`, ``save_total_limit`` and the
examples' auto-resume through ``get_last_checkpoint(output_dir)``.

Self-training runs its rounds inside this one run: the rounds' checkpoints, evaluations and logs are the run's own.
"""

from __future__ import annotations

import os
import re

import pytest
import torch
from helpers.kill import KillAt, Killed
from safetensors.torch import load_file
from test_trainer_contract import CASES, build
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

# Each case is smaller than its contract settings (12 labeled rows, batches of 4: 3 steps an epoch).
SETTINGS = {
    "self_training": dict(num_train_epochs=4),  # 12 steps a round, 2 rounds: 24 steps
    "consistency": dict(num_train_epochs=4),  # 12 steps
    "label_propagation": dict(num_train_epochs=8),  # 24 steps, propagations before epochs 2, 4 and 6
}
TOTAL_STEPS = {"self_training": 24, "consistency": 12, "label_propagation": 24}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def name(request) -> str:
    return request.param


def make(name, tmp_path, pools, tokenizer, **kwargs):
    labeled, unlabeled, evaluation = pools
    return build(CASES[name], tmp_path, tokenizer, labeled, unlabeled, eval_dataset=evaluation,
                 **(SETTINGS[name] | kwargs))


class Stream(TrainerCallback):
    """What a reporting integration such as `TensorBoardCallback` sees: it opens a writer (an event file) at each
    ``on_train_begin``, closes it at ``on_train_end``, and plots every ``on_log`` at ``state.global_step``."""

    def __init__(self):
        self.writers, self.closed, self.points, self.steps = 0, 0, [], []

    def on_train_begin(self, args, state, control, **kwargs):
        self.writers += 1

    def on_train_end(self, args, state, control, **kwargs):
        self.closed += 1

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.points += [(state.global_step, key) for key in logs or {}]


def decreasing_score():
    """A ``compute_metrics`` whose score falls at every evaluation: the first evaluation is the best."""
    calls = []

    def compute_metrics(prediction):
        calls.append(1)
        return {"score": 1.0 / len(calls)}

    return compute_metrics


def checkpoints(folder) -> list[str]:
    """Every ``checkpoint-N`` folder anywhere under ``folder``, relative to it, sorted."""
    return sorted(os.path.relpath(os.path.join(root, d), folder) for root, dirs, _ in os.walk(folder)
                  for d in dirs if re.fullmatch(r"checkpoint-\d+", d))


def test_one_step_counter_and_one_logging_stream(name, tmp_path, pools, tokenizer):
    stream = Stream()
    trainer = make(name, tmp_path, pools, tokenizer, eval_strategy="steps", eval_steps=5, logging_steps=2,
                   callbacks=[stream])
    trainer.train()
    total = TOTAL_STEPS[name]
    assert (stream.writers, stream.closed) == (1, 1)  # one event file
    assert stream.steps == list(range(1, total + 1))  # the step counter never restarts
    assert trainer.state.global_step == trainer.state.max_steps == total
    for key in ("loss", "eval_loss"):
        steps = [step for step, logged in stream.points if logged == key]
        assert steps == sorted(set(steps)) and len(steps) > 1, (key, steps)  # one curve, no overlay
    history = [entry["step"] for entry in trainer.state.log_history]
    assert history == sorted(history) and history[-1] == total
    first_loss = next(entry["step"] for entry in trainer.state.log_history if "loss" in entry)
    assert first_loss == 2  # the whole run is kept, from its first training log


def test_tensorboard_writes_one_event_file_with_one_curve_per_scalar(name, tmp_path, pools, tokenizer, monkeypatch):
    """``report_to="tensorboard"``: the Trainer's `TensorBoardCallback` writes a single event file whose loss and
    evaluation curves run over the whole run, steps strictly increasing (rounds do not overlay)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(logs))
    trainer = make(name, tmp_path, pools, tokenizer, eval_strategy="steps", eval_steps=5, logging_steps=2,
                   report_to="tensorboard")
    trainer.train()
    files = [os.path.join(root, f) for root, _, names in os.walk(logs) for f in names if "tfevents" in f]
    assert len(files) == 1, files
    events = EventAccumulator(files[0])
    events.Reload()
    for tag in ("train/loss", "eval/loss"):
        steps = [event.step for event in events.Scalars(tag)]
        assert len(steps) > 1 and steps == sorted(set(steps)), (tag, steps)
    assert max(event.step for event in events.Scalars("train/loss")) == TOTAL_STEPS[name]


def test_load_best_model_at_end_chooses_across_the_run(name, tmp_path, pools, tokenizer):
    """The first evaluation (step 3, for self-training in the labeled-only round 0) scores best: its checkpoint is
    the run's best and its weights are the ones loaded at the end."""
    trainer = make(name, tmp_path, pools, tokenizer, eval_strategy="steps", eval_steps=3, save_strategy="steps",
                   save_steps=3, load_best_model_at_end=True, metric_for_best_model="score",
                   compute_metrics=decreasing_score())
    trainer.train()
    best = os.path.join(trainer.args.output_dir, "checkpoint-3")
    assert trainer.state.best_model_checkpoint == best and trainer.state.best_metric == 1.0
    saved = load_file(os.path.join(best, "model.safetensors"))
    loaded = trainer.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_early_stopping_ends_the_run(name, tmp_path, pools, tokenizer):
    """Patience 1 over a falling score: the run stops at its second evaluation (step 4) and trains no further."""
    stream = Stream()
    trainer = make(name, tmp_path, pools, tokenizer, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                   save_steps=2, load_best_model_at_end=True, metric_for_best_model="score",
                   compute_metrics=decreasing_score(),
                   callbacks=[EarlyStoppingCallback(early_stopping_patience=1), stream])
    trainer.train()
    assert stream.steps == [1, 2, 3, 4] and trainer.state.global_step == 4
    assert (stream.writers, stream.closed) == (1, 1)
    assert trainer.state.best_model_checkpoint == os.path.join(trainer.args.output_dir, "checkpoint-2")


def test_save_total_limit_counts_the_whole_run(name, tmp_path, pools, tokenizer):
    trainer = make(name, tmp_path, pools, tokenizer, save_strategy="steps", save_steps=3, save_total_limit=2)
    trainer.train()
    total = TOTAL_STEPS[name]
    assert checkpoints(trainer.args.output_dir) == sorted([f"checkpoint-{total - 3}", f"checkpoint-{total}"])


def test_auto_resume_with_get_last_checkpoint(name, tmp_path, pools, tokenizer):
    """The examples' resume: ``get_last_checkpoint(output_dir)`` finds the checkpoint of a killed run (at step 15,
    for self-training in round 1), and training continues from it to the run's last step."""
    settings = dict(save_strategy="steps", save_steps=3)
    nth = {"self_training": 5, "consistency": 3, "label_propagation": 5}[name]
    killed = make(name, tmp_path, pools, tokenizer, callbacks=[KillAt("on_save", nth)], **settings)
    with pytest.raises(Killed):
        killed.train()
    output_dir = killed.args.output_dir
    last = get_last_checkpoint(output_dir)
    assert last == os.path.join(output_dir, f"checkpoint-{3 * nth}")
    stream = Stream()
    resumed = make(name, tmp_path, pools, tokenizer, callbacks=[stream], **settings)
    resumed.train(resume_from_checkpoint=last)
    assert stream.steps == list(range(3 * nth + 1, TOTAL_STEPS[name] + 1))
    assert get_last_checkpoint(output_dir) == os.path.join(output_dir, f"checkpoint-{TOTAL_STEPS[name]}")
