"""Files hf_ssl writes appear whole or not at all: a child process is killed (``os._exit``, no cleanup) at each write
and rename of an export, a ``save_model`` and a JSON record in turn; every file left is the previous version or the
new one, whole, and the next write (or run) deletes the temporary files the kill left behind."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import torch
from datasets import load_from_disk
from helpers.kill import run_killed
from helpers.tiny import text_pool, tiny_bert, word_tokenizer
from test_kill_and_resume import temp_files

from hf_ssl import ConsistencyConfig, ConsistencyTrainer, SelfTrainingConfig, SelfTrainingTrainer, sample_per_class
from hf_ssl.utils import write_text_atomic

ARGS = dict(report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)


def pools(tmp_path):
    tokenizer = word_tokenizer(tmp_path)
    labeled, unlabeled = sample_per_class(text_pool(tokenizer, 60, seed=0), k=4, seed=0)
    return tokenizer, labeled, unlabeled


def files(folder) -> dict[str, bytes]:
    """Every file under ``folder`` but temporary ones, by relative path."""
    return {os.path.relpath(os.path.join(root, f), folder): open(os.path.join(root, f), "rb").read()
            for root, _, names in os.walk(folder) if ".hf_ssl-" not in root for f in names
            if not f.startswith(".hf_ssl-")}


def test_export_killed_at_any_step_leaves_the_old_or_the_new_export(tmp_path):
    tokenizer, labeled, unlabeled = pools(tmp_path)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=SelfTrainingConfig(str(tmp_path / "out"), **ARGS),
                                  train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    versions = {"old": list(range(10)), "new": list(range(10, 40))}

    def export(version: str) -> None:
        rows = np.asarray(versions[version])
        trainer.pseudo_rows, trainer.pseudo_confidence = rows, np.full(len(rows), 0.9, dtype=np.float32)
        trainer.pseudo_targets = np.eye(3, dtype=np.float32)[rows % 3]
        trainer.first_round[rows] = 1
        trainer.export_pseudo_labels(str(path))

    path = tmp_path / "exports" / "pseudo"
    export("old")
    kills = 0
    for nth in itertools.count(1):
        if not run_killed(lambda: export("new"), nth):
            break
        kills += 1
        aside = path.parent / ".hf_ssl-old-pseudo"
        # killed between renaming the old export aside and the new one in: the old one waits aside, whole
        left = path if path.exists() else aside
        assert load_from_disk(str(left))["source_index"] in versions.values(), f"kill #{nth}"
        assert (left / "README.md").exists()
        export("new")  # the next export finishes the job and cleans up
        assert load_from_disk(str(path))["source_index"] == versions["new"]
        assert os.listdir(path.parent) == ["pseudo"], f"kill #{nth} left {os.listdir(path.parent)}"
        export("old")
    assert kills > 5


def test_save_model_killed_at_any_step_leaves_every_file_whole(tmp_path):
    tokenizer, labeled, unlabeled = pools(tmp_path)
    out = tmp_path / "run" / "out"
    trainer = ConsistencyTrainer(model=tiny_bert(), args=ConsistencyConfig(str(out), **ARGS), train_dataset=labeled,
                                 unlabeled_dataset=unlabeled, processing_class=tokenizer)
    model = trainer.model
    weights = {"old": {k: v.clone() for k, v in model.state_dict().items()}}
    with torch.no_grad():
        model.classifier.bias += 1
    weights["new"] = {k: v.clone() for k, v in model.state_dict().items()}
    versions = {}
    for version in ("new", "old"):  # the new version's files, then the old version saved in place
        model.load_state_dict(weights[version])
        trainer.save_model()
        versions[version] = files(out)
    assert versions["old"].keys() == versions["new"].keys() and versions["old"] != versions["new"]
    model.load_state_dict(weights["new"])
    kills = 0
    for nth in itertools.count(1):
        if not run_killed(trainer.save_model, nth):
            break
        kills += 1
        left = files(out)
        assert left.keys() == versions["old"].keys(), f"kill #{nth}"
        for name, content in left.items():
            assert content in (versions["old"][name], versions["new"][name]), f"kill #{nth}: {name} is broken"
        trainer.save_model()  # the next save: the new version, no temporary file left
        assert files(out) == versions["new"] and not temp_files(out), f"kill #{nth}"
        model.load_state_dict(weights["old"])
        trainer.save_model()
        model.load_state_dict(weights["new"])
    assert kills > 5


def test_record_killed_while_written_keeps_the_old_one_and_the_next_run_cleans_up(tmp_path):
    tokenizer, labeled, unlabeled = pools(tmp_path)
    out = tmp_path / "out"
    name = "notes.json"
    write_text_atomic(str(out), name, json.dumps({"rounds": [1]}))
    for nth in (1, 2):  # mid-write, then just before the rename
        assert run_killed(lambda: write_text_atomic(str(out), name, json.dumps({"rounds": [1, 2]})), nth)
        assert json.loads((out / name).read_text()) == {"rounds": [1]}
    assert temp_files(out)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=SelfTrainingConfig(str(out), max_rounds=0, max_steps=1,
                                                                             **ARGS),
                                  train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    trainer.train()
    assert not temp_files(out) and json.loads((out / name).read_text()) == {"rounds": [1]}
