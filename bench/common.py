"""What every bench script shares: argument parsing, run provenance, atomic result files, summaries over seeds and
the benchmark data pools.

A script builds its parser with `make_parser`, calls `start_run` once its arguments are parsed and writes its report
with `write_result`, which adds a ``provenance`` record (`Run.provenance`) to the report:

- ``script`` and ``command``: the module and the command line that reproduce the file;
- ``settings``: the parsed arguments;
- ``versions``: the installed versions of `VERSIONED_PACKAGES` (None when one is not installed);
- ``git``: the commit of the checkout at the start of the run and whether its tracked files outside
  ``bench/results/`` differed from it (``dirty``, with the changed paths);
- ``machine``: CPU count, CPUs usable by the process, torch intra-/inter-op threads, ``OMP_NUM_THREADS``, the
  1/5/15-minute load averages at the start and at the write, platform and Python version;
- ``started_at`` (UTC, ISO 8601) and ``seconds`` from the start to the write.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_ssl.utils import write_text_atomic

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
VERSIONED_PACKAGES = ("hf-ssl", "torch", "transformers", "datasets", "numpy", "scikit-learn", "kornia")
PROBE_C = 10.0
"""Inverse regularisation strength of every linear probe (logistic regression) in the bench scripts."""
FASHION_TEST_SEED = 1234
"""Shuffle seed of the Fashion-MNIST test rows every script scores on (the first ``test_rows`` after shuffling)."""


def make_parser(doc: str | None, *, out: str | None = None, out_required: bool = False,
                seeds: Sequence[int] | None = None, seed: int | None = None,
                threads: bool = False) -> argparse.ArgumentParser:
    """A parser with the script's docstring as help and the shared flags the script asks for.

    Args:
        doc: the script's ``__doc__``.
        out: default of ``--out`` (the result file); None with ``out_required=False`` leaves it to the script.
        out_required: make ``--out`` required.
        seeds: default of ``--seeds`` (several ints); None: no ``--seeds`` flag.
        seed: default of ``--seed`` (one int); None: no ``--seed`` flag.
        threads: add ``--threads`` (torch threads; `start_run` applies it).
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if seeds is not None:
        parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed)
    if threads:
        parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=out, required=out_required, help="result file (JSON)")
    return parser


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, min, max and sample standard deviation (0 for one value) of per-seed values, and the values."""
    values = list(values)
    if not values:
        raise ValueError("summary needs at least one value (one per seed), got none")
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}


def unlabeled_limit(max_unlabeled: int) -> int | None:
    """``--max_unlabeled`` as `sample_per_class` takes it: a negative value means the whole rest of the split."""
    return None if max_unlabeled < 0 else max_unlabeled


def fashion_pools(raw: Any, seed: int, labels_per_class: int, max_unlabeled: int, train_subset: int) -> tuple:
    """(train subset, labeled, unlabeled) of Fashion-MNIST for one seed: ``train_subset`` rows of the train split
    shuffled by the seed, then `sample_per_class` on them (the unlabeled pool keeps ``ssl_truth``).

    Args:
        raw: `hf_ssl.load_fashion_mnist()`.
        seed: shuffle and sampling seed.
        labels_per_class: labeled rows per class.
        max_unlabeled: unlabeled pool size (negative: the rest of the subset).
        train_subset: training rows drawn from.
    """
    from hf_ssl import sample_per_class

    train = first_rows(raw["train"], train_subset, seed)
    labeled, unlabeled = sample_per_class(train, labels_per_class, seed=seed,
                                          max_unlabeled=unlabeled_limit(max_unlabeled))
    return train, labeled, unlabeled


def first_rows(dataset: Any, rows: int, seed: int) -> Any:
    """The first ``rows`` rows (at most all) of ``dataset`` after shuffling it by ``seed``; the whole dataset,
    unshuffled, when ``rows`` <= 0."""
    return dataset.shuffle(seed=seed).select(range(min(rows, len(dataset)))) if rows > 0 else dataset


def fashion_test(raw: Any, rows: int) -> Any:
    """The first ``rows`` Fashion-MNIST test images after shuffling by `FASHION_TEST_SEED` (rows <= 0: all)."""
    return first_rows(raw["test"], rows, FASHION_TEST_SEED)


def git_state() -> dict[str, Any]:
    """Commit of the checkout and whether its tracked files outside ``bench/results/`` differ from it."""
    def git(*command: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *command], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed),
                "changed": [line[3:] for line in changed.splitlines()][:20]}
    except (OSError, subprocess.CalledProcessError) as error:  # no git, or not a checkout: say so in the record
        detail = getattr(error, "stderr", None) or str(error)
        return {"commit": None, "dirty": None, "error": detail.strip()}


def package_versions() -> dict[str, str | None]:
    """Installed version of each of `VERSIONED_PACKAGES` (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass
class Run:
    """One invocation of a bench script: what `write_result` records about it (see the module docstring)."""

    script: str
    argv: list[str]
    settings: dict[str, Any]
    git: dict[str, Any] = field(default_factory=git_state)
    started: float = field(default_factory=time.time)
    load_start: tuple[float, float, float] = field(default_factory=os.getloadavg)

    @property
    def command(self) -> str:
        return shlex.join(["python", "-m", self.script, *self.argv])

    def provenance(self) -> dict[str, Any]:
        """The provenance record, with the load average and elapsed time as of now."""
        import torch

        return {
            "script": self.script, "command": self.command, "settings": self.settings,
            "versions": package_versions(), "git": self.git,
            "machine": {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                        "torch_threads": torch.get_num_threads(),
                        "torch_interop_threads": torch.get_num_interop_threads(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                        "load_start": [round(v, 2) for v in self.load_start],
                        "load_end": [round(v, 2) for v in os.getloadavg()],
                        "platform": platform.platform(), "python": platform.python_version()},
            "started_at": datetime.datetime.fromtimestamp(self.started, datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "seconds": round(time.time() - self.started, 1),
        }


def start_run(args: argparse.Namespace, script_file: str, argv: Sequence[str] | None = None) -> Run:
    """Record the start of a run (commit, load) and apply ``--threads`` when the script has it and it is set.

    Args:
        args: the parsed arguments (recorded as the settings).
        script_file: the script's ``__file__`` (its module is ``bench.<file stem>``).
        argv: the arguments the script parsed (default ``sys.argv[1:]``).
    """
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    return Run(f"bench.{Path(script_file).stem}", list(sys.argv[1:] if argv is None else argv), settings)


def write_result(path: str | os.PathLike, report: dict[str, Any], run: Run) -> str:
    """Write ``report`` with ``run``'s provenance first, as indented JSON, atomically; return the path."""
    path = os.fspath(path)
    record = {"provenance": run.provenance(), **{k: v for k, v in report.items() if k != "provenance"}}
    return write_text_atomic(os.path.dirname(path) or ".", os.path.basename(path),
                             json.dumps(record, indent=2, default=str) + "\n")


def classifier(kind: str, names: Sequence[str], path: Any = None, **extra: Any) -> Any:
    """A packaged pretrained model with a new classification head over ``names``: MiniLM for ``kind="text"``,
    DINOv2-S for ``kind="image"`` (or the model at ``path``, whose own head, e.g. ImageNet's, is replaced);
    ``extra`` goes to ``from_pretrained``."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    from hf_ssl import dinov2_path, minilm_path

    labels = {"num_labels": len(names), "id2label": dict(enumerate(names)),
              "label2id": {n: i for i, n in enumerate(names)}}
    if kind == "text":
        return AutoModelForSequenceClassification.from_pretrained(path or minilm_path(), **labels, **extra)
    return AutoModelForImageClassification.from_pretrained(path or dinov2_path(), **labels,
                                                           **{"ignore_mismatched_sizes": True, **extra})


def labeled_only_trainer(fields: dict[str, Any], labeled: Any, unlabeled: Any, image: bool, **kwargs: Any) -> Any:
    """The labeled-only baseline trainer: a plain `SSLTrainer` for text; for images a `ConsistencyTrainer` with
    λ = 0, no graph prior and a one-row unlabeled batch that never counts, so labeled images get the same weak view
    (flip and crop) as in the consistency arms; a random head unless ``fields`` name ``head_init``.

    Args:
        fields: `SSLConfig` fields (output_dir, seed, training settings).
        labeled: the labeled pool (model inputs).
        unlabeled: the unlabeled pool (images only; ignored for text).
        image: whether the pools are images.
        kwargs: the trainer's other arguments (model, eval_dataset, processing_class, compute_metrics).
    """
    from hf_ssl import ConsistencyConfig, ConsistencyTrainer, SSLConfig, SSLTrainer

    if image:
        fields = {"head_init": "random", "graph_prior_weight": 0.0, **fields}
        config = ConsistencyConfig(**fields, unlabeled_loss_weight=0.0, unlabeled_batch_ratio=1e-3, threshold=1.0)
        return ConsistencyTrainer(args=config, train_dataset=labeled, unlabeled_dataset=unlabeled, **kwargs)
    return SSLTrainer(args=SSLConfig(**fields), train_dataset=labeled, **kwargs)
