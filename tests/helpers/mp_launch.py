"""Run a script as several CPU processes (gloo) or as one, for the multi-process tests.

accelerate 1.15's ``--cpu`` flag always starts a single process unless MPI is configured; its torchrun launcher,
selected by ``--multi_gpu``, starts real CPU processes when the script's config sets ``use_cpu`` (or builds an
``Accelerator(cpu=True)``). Each launch gets a free rendezvous port so that runs on a shared machine do not clash.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve().parent  # the scripts launched by the tests
ROOT = HELPERS.parents[1]  # the repository


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(script: str | os.PathLike, args: list[str], nproc: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``script args`` with ``nproc`` processes (``accelerate launch --multi_gpu``) or plain python when 1;
    fail the test with the end of stderr when it exits non-zero."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if nproc == 1:
        cmd = [sys.executable, str(script), *args]
    else:
        accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1",
               "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
               str(script), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} exited with {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def two_vs_one(script: str, tokenizer: Any, tmp_path: Path, batch_size: int) -> tuple[list[dict], dict]:
    """Run a test script (``script tokenizer_dir out_dir per_device_batch``, writing ``out_dir/rank<i>.json``)
    under 2 processes with ``batch_size`` per device, then under 1 process with 2x that batch (the same global
    batch); return the two ranks' records and the single process's record."""
    tokenizer.save_pretrained(tmp_path / "tok")
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir(), one.mkdir()
    launch(HELPERS / script, [str(tmp_path / "tok"), str(two), str(batch_size)], nproc=2)
    launch(HELPERS / script, [str(tmp_path / "tok"), str(one), str(2 * batch_size)], nproc=1)
    ranks = [json.loads((two / f"rank{i}.json").read_text()) for i in range(2)]
    single = json.loads((one / "rank0.json").read_text())
    assert [r["world_size"] for r in ranks] == [2, 2] and single["world_size"] == 1
    return ranks, single
