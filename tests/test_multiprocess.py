"""Two CPU processes (gloo) through `accelerate launch --multi_gpu --num_processes 2` with ``use_cpu=True``.

(accelerate 1.15's ``--cpu`` flag always starts a single process unless MPI is configured; its torchrun
launcher, selected by ``--multi_gpu``, starts real CPU processes when the script's config sets use_cpu.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no",
           "--dynamo_backend", "no", str(HERE / "mp_selftrain_script.py"), str(tmp_path / "tok"), str(two), "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(HERE / "mp_selftrain_script.py"), str(tmp_path / "tok"), str(one),
                             "4"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((two / f"rank{i}.json").read_text()) for i in range(2)]
    single = json.loads((one / "rank0.json").read_text())
    assert ranks[0]["world_size"] == 2 and single["world_size"] == 1
    # pseudo-labels identical on every rank
    assert ranks[0]["pseudo_rows"] == ranks[1]["pseudo_rows"] and ranks[0]["pseudo_labels"] == ranks[1]["pseudo_labels"]
    assert ranks[0]["eval_accuracy"] == ranks[1]["eval_accuracy"]
    # both runs learn the toy task and pseudo-label the pool
    assert len(ranks[0]["pseudo_rows"]) > 0 and len(single["pseudo_rows"]) > 0
    assert ranks[0]["round0_accuracy"] > 0.6 and single["round0_accuracy"] > 0.6


@pytest.mark.slow
def test_consistency_state_identical_on_every_rank(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    script = str(HERE / "mp_consistency_script.py")
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", script, str(tmp_path / "tok"), str(two), "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, script, str(tmp_path / "tok"), str(one), "4"], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((two / f"rank{i}.json").read_text()) for i in range(2)]
    single = json.loads((one / "rank0.json").read_text())
    assert ranks[0]["world_size"] == 2 and single["world_size"] == 1
    # threshold state, alignment statistics and EMA teacher are the same on every rank
    for key in ("row_class", "model_prior", "ema_classifier", "eval_accuracy", "mask_rate"):
        assert ranks[0][key] == ranks[1][key], key
    # the same number of global steps over the same global batch size as one process with 2x the batch
    assert ranks[0]["steps"] == single["steps"] and ranks[0]["unlabeled_batches"] == single["unlabeled_batches"]
    # both learn the toy task beyond chance (1/3), and the thresholds saw confident rows in both
    assert ranks[0]["eval_accuracy"] > 0.5 and single["eval_accuracy"] > 0.5
    assert max(ranks[0]["row_class"]) >= 0 and max(single["row_class"]) >= 0
