"""Never losing work, for each of the three trainers on a tiny random BERT:

- a run killed at a chosen point (mid-round, mid-epoch, at an epoch's or a round's boundary, or while a checkpoint is
  being written) and resumed with ``resume_from_checkpoint=True`` ends with the weights, the per-round / per-epoch
  records, the hf_ssl state and the training loss of the run that was never interrupted, and leaves no temporary
  file;
- incomplete checkpoints are skipped with a warning; a plain ``Trainer`` checkpoint, an incomplete one and a path that
  does not exist are refused with a clear error before anything trains.

What a kill during a write leaves (exports, ``save_model``) is in ``test_atomic_writes.py``.
"""

from __future__ import annotations

import logging
import os
import re

import pytest
import torch
from helpers.checks import assert_same_state, params
from helpers.kill import KillAt, Killed, run_killed
from helpers.tiny import text_pool, tiny_bert, word_tokenizer
from test_trainer_contract import CASES, build
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from hf_ssl import sample_per_class

# Each case is smaller than its contract settings; checkpoints every few steps.
SETTINGS = {
    "self_training": dict(num_train_epochs=4, save_steps=3),  # 12 steps a round, 2 rounds
    "consistency": dict(num_train_epochs=3, save_steps=2),  # 9 steps, epochs end at 3, 6, 9
    "label_propagation": dict(num_train_epochs=6, save_steps=3),  # 18 steps, propagations before epochs 2 and 4
}
KILLS = [  # (trainer, callback event, its n-th call, where the run stops)
    ("self_training", "on_save", 2, "mid-round 0"),
    ("self_training", "on_save", 4, "round 0's last checkpoint written, round 1 not started"),
    ("self_training", "on_round_begin", 2, "round boundary: round 0 pseudo-labeled, round 1 not started"),
    ("self_training", "on_save", 6, "mid-round 1"),
    ("consistency", "on_save", 2, "mid-epoch (step 4)"),
    ("consistency", "on_save", 3, "epoch boundary (step 6)"),
    ("label_propagation", "on_save", 3, "epoch 3 ended, one epoch after a propagation"),
    ("label_propagation", "on_epoch_begin", 5, "epoch 4 begins, before its propagation"),
]

TIMINGS = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")  # the records' only wall-clock values


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tokenizer = word_tokenizer(tmp_path_factory.mktemp("tok"))
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 120, seed=0), k=4, seed=0)
    return tokenizer, labeled, unlabeled, text_pool(tokenizer, 30, seed=1)


def make(name, folder, data, model=None, **kwargs):
    tokenizer, labeled, unlabeled, evaluation = data
    if name == "self_training":
        kwargs["eval_dataset"] = evaluation
    settings = SETTINGS[name] | dict(save_strategy="steps", full_determinism=True)
    return build(CASES[name], folder, tokenizer, labeled, unlabeled, model=model, **(settings | kwargs))


_REFERENCES = {}


def reference(name, data, tmp_path_factory):
    """The uninterrupted run of ``name`` (computed once)."""
    if name not in _REFERENCES:
        trainer = make(name, tmp_path_factory.mktemp(name), data)
        trainer.output = trainer.train()
        if name == "self_training":
            assert len(trainer.rounds) == 2 and trainer.rounds[0]["pseudo_labels"]["selected"] > 0
        _REFERENCES[name] = trainer
    return _REFERENCES[name]


def temp_files(folder) -> list[str]:
    return [os.path.join(root, f) for root, dirs, files in os.walk(folder) for f in files + dirs
            if f.startswith(".hf_ssl-") or f.endswith(".tmp")]


def newest_checkpoint(folder) -> str:
    """The last ``checkpoint-N`` folder of ``folder``."""
    return max((int(d.split("-")[1]), os.path.join(folder, d)) for d in os.listdir(folder)
               if re.fullmatch(r"checkpoint-\d+", d))[1]


def assert_same_run(first, resumed, output, name):
    """Same weights, records, hf_ssl state and training loss (of the whole run) as the uninterrupted ``first``, and
    no temporary file left."""
    assert abs(output.training_loss - first.output.training_loss) <= 1e-6
    a, b = params(first.model), params(resumed.model)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-6, f"final weights differ by {worst}"
    records = CASES[name].records
    assert_same_state(getattr(first, records), getattr(resumed, records), ignore=TIMINGS, where=records)
    assert_same_state(first.ssl_state_dict(), resumed.ssl_state_dict(), ignore=TIMINGS)
    assert not temp_files(resumed.args.output_dir)


@pytest.mark.parametrize(("name", "event", "nth", "point"), KILLS, ids=[f"{k[0]}-{k[3]}" for k in KILLS])
def test_killed_run_resumes_exactly(name, event, nth, point, data, tmp_path, tmp_path_factory):
    first = reference(name, data, tmp_path_factory)
    killed = make(name, tmp_path, data, callbacks=[KillAt(event, nth)])
    with pytest.raises(Killed):
        killed.train()
    resumed = make(name, tmp_path, data, model=tiny_bert(seed=5))  # the weights must come from the checkpoints
    output = resumed.train(resume_from_checkpoint=True)
    assert_same_run(first, resumed, output, name)


def _fail_at(trainer, method, nth):
    """Make ``trainer.<method>`` raise `Killed` at its ``nth`` call."""
    real, calls = getattr(trainer, method), []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == nth:
            raise Killed(method)
        return real(*args, **kwargs)

    setattr(trainer, method, failing)


@pytest.mark.parametrize("name", list(CASES))
def test_incomplete_checkpoint_is_refused_or_skipped(name, data, tmp_path, tmp_path_factory, caplog):
    """Killed while writing its 3rd checkpoint (model and optimizer written, not the trainer state)."""
    first = reference(name, data, tmp_path_factory)
    killed = make(name, tmp_path, data)
    _fail_at(killed, "_save_rng_state", 3)
    with pytest.raises(Killed):
        killed.train()
    broken = newest_checkpoint(tmp_path / "out")
    assert os.path.exists(os.path.join(broken, "ssl_state.pt"))
    resumed = make(name, tmp_path, data, model=tiny_bert(seed=5))
    with pytest.raises(ValueError, match="incomplete checkpoint.*trainer_state.json is missing"):
        resumed.train(resume_from_checkpoint=broken)
    with caplog.at_level(logging.WARNING):
        output = resumed.train(resume_from_checkpoint=True)
    assert f"skips {broken}" in caplog.text
    assert_same_run(first, resumed, output, name)


def test_killed_while_writing_a_checkpoint_resumes_exactly(data, tmp_path, tmp_path_factory):
    """A child process dies (no cleanup) half-way through ``ssl_state.pt``, then through ``README.md``, of a
    checkpoint; the resumed run skips the broken checkpoints and deletes the temporary files."""
    first = reference("consistency", data, tmp_path_factory)
    for nth, file in ((3, "ssl_state.pt"), (4, "README.md")):
        trainer = make("consistency", tmp_path, data)
        assert run_killed(trainer.train, nth, lambda kind, path, file=file: kind == "open" and file in path)
    assert temp_files(tmp_path / "out")  # what the kills left
    resumed = make("consistency", tmp_path, data, model=tiny_bert(seed=5))
    output = resumed.train(resume_from_checkpoint=True)
    assert_same_run(first, resumed, output, "consistency")


@pytest.fixture(scope="module")
def plain_checkpoint(data, tmp_path_factory):
    """A checkpoint of a plain `transformers.Trainer` (no hf_ssl state)."""
    tokenizer, labeled, _, _ = data
    folder = tmp_path_factory.mktemp("plain")
    args = TrainingArguments(str(folder), max_steps=1, save_strategy="steps", save_steps=1, report_to="none",
                             use_cpu=True, per_device_train_batch_size=4)
    Trainer(model=tiny_bert(), args=args, train_dataset=labeled.remove_columns("text"),
            data_collator=DataCollatorWithPadding(tokenizer)).train()
    return str(folder / "checkpoint-1")


@pytest.mark.parametrize("name", list(CASES))
def test_plain_trainer_checkpoint_and_missing_path_are_refused(name, data, plain_checkpoint, tmp_path):
    trainer = make(name, tmp_path, data)
    before = params(trainer.model)
    with pytest.raises(ValueError, match="holds no hf_ssl state.*plain transformers.Trainer checkpoint"):
        trainer.train(resume_from_checkpoint=plain_checkpoint)
    missing = str(tmp_path / "out" / "checkpoint-7")
    with pytest.raises(ValueError, match=f"resume_from_checkpoint='{missing}' does not exist"):
        trainer.train(resume_from_checkpoint=missing)
    with pytest.raises(ValueError, match="holds no complete hf_ssl checkpoint"):
        trainer.train(resume_from_checkpoint=True)
    after = params(trainer.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing trained
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")
