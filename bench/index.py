"""Index of ``bench/results/``: every result file with the script and command that produced it, the commit that last
changed it and a one-line description, then the files archived out of the folder with the commit that still has
them (``git show <commit>:bench/results/<file>`` prints one).

A file written through `bench.common.write_result` carries its script and command in its ``provenance`` (and a
resumable file the command of each invocation); for older files the script comes from the file name
(`LEGACY_SCRIPTS`) and the command is rebuilt from the settings the file recorded, with the script's current flags
and ``--out`` set to the file. Descriptions come from `DESCRIPTIONS`, else from the report's ``description``,
else from the script's docstring. Files in subfolders are listed by their path inside ``bench/results/``, but a
benchmark-suite folder (``suite/<name>/``, written by ``python -m bench``) is listed by its ``index.json`` alone,
which lists its run files. Run it
after committing new results, then commit the index:

    python -m bench.index            # writes bench/results/INDEX.md and bench/results/index.json
    python -m bench.index --check    # exit status 1 if index.json does not list exactly the files present
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS
from hf_ssl.utils import write_text_atomic

INDEX_FILES = ("INDEX.md", "index.json")
SUITE = "suite"  # bench/results/suite/<name>/: output folders of python -m bench, listed by their index.json
LEGACY_SCRIPTS = (  # file-name prefix: script, first match wins
    ("adaptation_trajectory", "adaptation_trajectory"), ("augment_speed", "augment_speed"),
    ("consistency_step", "consistency_step"), ("consistency_", "consistency_bench"),
    ("label_propagation_trainer", "consistency_bench"), ("fashion_pool_label_accuracy", "consistency_bench"),
    ("pilot_fashion", "consistency_bench"), ("encode_throughput", "encode_throughput"),
    ("fashion_features", "fashion_features"), ("labelprop_r8", "labelprop_r8"), ("labelprop_scale", "labelprop_scale"),
    ("select_r8", "select_r8"), ("selftrain_r8", "selftrain_r8"),
)
DESCRIPTIONS = {
    "adaptation_trajectory_fashion_mnist.json": "Label-spreading accuracy of the DINOv2-S graph of a 5,960-image "
        "Fashion-MNIST pool every 200 SimCLR steps up to 1,600 (seed 1, lr 5e-5)",
    "augment_speed_n448_1thread.json": "Strong and weak image views, batched vs a per-image loop: 448 images of "
        "56 px, 1 torch thread",
    "augment_speed_n64_1thread.json": "Strong and weak image views, batched vs a per-image loop: 64 images of 56 px, "
        "1 torch thread",
    "consistency_fashion_mnist.json": "Labeled-only vs each consistency method on Fashion-MNIST (DINOv2-S 56 px, "
        "4 labels/class, 1,500 unlabeled, linear-probe head, lr 2e-5, 30 epochs, 3 seeds) and full labels",
    "consistency_fashion_mnist_60ep.json": "The same as consistency_fashion_mnist.json at 60 epochs",
    "consistency_fashion_mnist_adapted.json": "Fashion-MNIST consistency arms after 400 SimCLR steps of contrastive "
        "adaptation on the pool, with the graph prior (weights 0.5 and 1), 3 seeds",
    "consistency_fashion_mnist_graph.json": "Fashion-MNIST consistency methods with the graph prior (weight 0.5, "
        "built once or rebuilt every 10 epochs), 60 epochs, 5,000 test images, 3 seeds; full-label and pool-oracle "
        "ceilings",
    "consistency_r8.json": "Labeled-only vs each consistency method on R8 (MiniLM, 5 labels/class, 1,500 unlabeled, "
        "random head, 3 seeds) and full-label fine-tuning",
    "consistency_r8_graph.json": "R8 consistency methods with the graph prior (weight 0.5), whole pool, "
        "linear-probe head, 3 seeds",
    "consistency_r8_lpft.json": "R8 consistency methods, FixMatch threshold variants and LabelPropagationTrainer "
        "from a linear-probe head (LP-FT), whole pool, 3 seeds",
    "consistency_r8_mu4.json": "R8 FixMatch at mu 4, with and without an EMA teacher, linear-probe head, whole pool",
    "consistency_step_dinov2.json": "Consistency training step over raw forward+backward, DINOv2-S 56 px, "
        "augmentation in the step or in the collator (0 or 1 workers)",
    "consistency_step_minilm.json": "Consistency training step over raw forward+backward, MiniLM, augmentation in "
        "the step or in the collator (0 or 1 workers)",
    "encode_throughput.json": "hf_ssl.encode vs a fixed-padding loop on 1,000 R8 texts, MiniLM, 128 tokens, "
        "torch's default threads",
    "encode_throughput_1thread.json": "hf_ssl.encode vs a fixed-padding loop on 1,000 R8 texts, MiniLM, 128 tokens, "
        "1 torch thread",
    "fashion_features.json": "Frozen DINOv2-S features of Fashion-MNIST layer by layer against raw pixels: label "
        "spreading on the pool and linear probes, 3 seeds",
    "fashion_features_224px.json": "The same as fashion_features.json at 224-px inputs (seed 1, 1,000 test images)",
    "fashion_features_adapted_seed1.json": "The same as fashion_features.json for the encoder adapted by 400 SimCLR "
        "steps, with layer and pixel concatenations (seed 1)",
    "fashion_pool_label_accuracy.json": "Fashion-MNIST fine-tuned on the pool labelled by the adapted encoder's "
        "graph, partly corrected to 80% or 90% right, or true; LabelPropagationTrainer after adapting (seeds 1, 0)",
    "label_propagation_trainer_r8_fullpool.json": "LabelPropagationTrainer on R8, propagating once over the "
        "pretrained embeddings, random head, whole pool, 3 seeds",
    "label_propagation_trainer_r8_warmup15.json": "LabelPropagationTrainer on R8, propagating every 3 epochs after a "
        "15-epoch warm-up, 1,500 unlabeled, 3 seeds",
    "labelprop_r8.json": "LabelPropagator vs scikit-learn LabelSpreading(knn) vs a linear probe on frozen MiniLM "
        "embeddings of R8, 5 labels/class, 3 seeds; LabelPropagator parameter sweep scored on test",
    "labelprop_scale_1000000.json": "LabelPropagator on 1M x 384 synthetic clustered vectors: time and peak RSS",
    "labelprop_scale_50000.json": "LabelPropagator (approximate and exact index) vs scikit-learn "
        "LabelSpreading(knn) on 50k x 384 synthetic clustered vectors",
    "labelprop_scale_50000_busy1.json": "The same as labelprop_scale_50000.json with one CPU-bound busy loop "
        "running alongside, on a machine already loaded by other jobs (load average ~6.5-7.7 on 2 CPUs)",
    "select_r8.json": "k-means vs random choice of 40 R8 texts to label, logistic regression on the picks, 3 seeds",
    "selftrain_r8.json": "Labeled-only vs self-training vs a linear probe on R8 (MiniLM, 5 labels/class, 1,500 "
        "unlabeled), 3 seeds",
}
_PILOT = "pilot of bench.consistency_bench on Fashion-MNIST, seed 1: "
ARCHIVED = {
    "augment_speed.json": "superseded by augment_speed_n64_1thread.json (same 64-image batch, 1 torch thread)",
    "label_propagation_trainer_r8_every3.json": "superseded by label_propagation_trainer_r8_fullpool.json and "
        "consistency_r8_lpft.json (LabelPropagationTrainer on R8 with its later defaults)",
    "label_propagation_trainer_r8_once.json": "superseded by label_propagation_trainer_r8_fullpool.json (the same "
        "schedule on the whole pool) and consistency_r8_lpft.json",
    "label_propagation_trainer_r8_once_top50.json": "superseded by label_propagation_trainer_r8_fullpool.json and "
        "consistency_r8_lpft.json",
    "pilot_fashion_112px.json": _PILOT + "112-px inputs",
    "pilot_fashion_150ep.json": _PILOT + "150 epochs",
    "pilot_fashion_9layers.json": _PILOT + "only the lowest 9 encoder layers (--num_layers 9)",
    "pilot_fashion_contrastive.json": _PILOT + "contrastive adaptation before FixMatch",
    "pilot_fashion_freeze8.json": _PILOT + "lowest 8 encoder layers frozen (--freeze_layers 8)",
    "pilot_fashion_graph_layer.json": _PILOT + "graph prior from layer 8 (token mean or CLS); seeds 0 and 2 for the "
        "mean",
    "pilot_fashion_lr5e-5.json": _PILOT + "learning rate 5e-5",
    "pilot_fashion_mu4.json": _PILOT + "mu 4 with 3,000 unlabeled",
    "pilot_fashion_pool5960.json": _PILOT + "FixMatch after 400 SimCLR steps on a 5,960-image pool",
    "pilot_fashion_variants.json": _PILOT + "FixMatch variants (threshold 0.95, distribution alignment, EMA teacher, "
        "FreeMatch, SoftMatch)",
}


def git_short(*args: str) -> str | None:
    """``git log -1 --format=%h <args>`` in the repository (None if git finds no such commit)."""
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h", *args], capture_output=True, text=True,
                         check=True).stdout.strip()
    return out or None


def legacy_script(name: str) -> str:
    for prefix, script in LEGACY_SCRIPTS:
        if name.startswith(prefix):
            return f"bench.{script}"
    raise ValueError(f"{name}: no recorded provenance and no script known for its name; write it with "
                     "bench.common.write_result or add its prefix to bench.index.LEGACY_SCRIPTS")


def legacy_settings(script: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings an older result file (before `bench.common.write_result`, without invocations) recorded."""
    if script == "bench.labelprop_scale":
        return [{key: report[key] for key in ("n", "dim", "classes")} | report["data"]]
    settings = dict(report.get("setting") or report.get("args") or {})
    if script == "bench.consistency_bench":  # seeds and arms were not part of the recorded setting
        settings["seeds"] = sorted({r["seed"] for r in report["runs"]})
        settings["arms"] = list(dict.fromkeys(r["arm"] for r in report["runs"]))
    return [settings]


def command(script: str, settings: dict[str, Any]) -> str:
    """``python -m <script>`` with a flag for every setting the script's parser knows (others are left out)."""
    parser = importlib.import_module(script).build_parser()
    words = ["python", "-m", script]
    for action in parser._actions:
        if not action.option_strings or action.dest not in settings or settings[action.dest] in (None, False):
            continue
        value = settings[action.dest]
        words.append(action.option_strings[0])
        if value is not True:
            words += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return shlex.join(words)


def name(path: Path) -> str:
    """A result file's path inside bench/results/."""
    return path.relative_to(RESULTS).as_posix()


def indexed(path: Path) -> bool:
    """Whether a file under bench/results/ gets an entry: all but the index itself and, of a benchmark-suite output
    folder (``suite/<name>/``), all but its ``index.json`` (which lists its run files; its cache is no result)."""
    parts = path.relative_to(RESULTS).parts
    if parts[0] == SUITE and len(parts) > 2:
        return len(parts) == 3 and parts[2] == "index.json"
    return name(path) not in INDEX_FILES


def result_files() -> list[Path]:
    """Every file under bench/results/ (subfolders included) that gets an entry (`indexed`)."""
    return sorted(p for p in RESULTS.rglob("*") if p.is_file() and indexed(p))


def entry(path: Path) -> dict[str, Any]:
    """The index entry of one result file."""
    report = json.loads(path.read_text(encoding="utf-8"))
    provenance = report.get("provenance")
    script = provenance["script"] if provenance else legacy_script(path.name)
    invocations = report.get("invocations") or ([provenance] if provenance else legacy_settings(script, report))
    commands = [i.get("command") or command(script, {**i, "out": f"bench/results/{name(path)}"}) for i in invocations]
    source = "recorded" if all("command" in i for i in invocations) else "rebuilt from the recorded settings"
    description = (DESCRIPTIONS.get(name(path)) or report.get("description")
                   or (importlib.import_module(script).__doc__ or "").strip().split("\n")[0])
    return {"file": name(path), "script": script, "commands": commands, "command_source": source,
            "commit": git_short("--", str(path.relative_to(REPO))), "description": description}


def build_index() -> dict[str, Any]:
    archived = []
    for name, reason in sorted(ARCHIVED.items()):
        if (RESULTS / name).exists():
            raise ValueError(f"{name} is listed as archived but is still in bench/results/: delete it or drop it "
                             "from bench.index.ARCHIVED")
        archived.append({"file": name, "reason": reason,
                         "commit": git_short("--diff-filter=AM", "--", f"bench/results/{name}")})
    return {"results": [entry(p) for p in result_files()], "archived": archived}


def markdown(index: dict[str, Any]) -> str:
    lines = ["# bench/results", "", "Generated by `python -m bench.index`; commands run from the repository root. "
             "*Commit*: the last commit that changed the file.", "",
             "| file | description | command | commit |", "|---|---|---|---|"]
    for e in index["results"]:
        commands = "<br>".join(f"`{c}`" for c in e["commands"])
        rebuilt = "" if e["command_source"] == "recorded" else " (rebuilt from the file's settings)"
        lines.append(f"| [{e['file']}]({e['file']}) | {e['description']} | {commands}{rebuilt} | {e['commit']} |")
    lines += ["", "## Archived", "", "Removed from this folder; `git show <commit>:bench/results/<file>` prints one.",
              "", "| file | why | commit that has it |", "|---|---|---|"]
    lines += [f"| {a['file']} | {a['reason']} | {a['commit']} |" for a in index["archived"]]
    return "\n".join(lines) + "\n"


def unlisted() -> tuple[list[str], list[str]]:
    """(files in bench/results/ missing from index.json, index.json entries whose file is gone)."""
    listed = {e["file"] for e in json.loads((RESULTS / "index.json").read_text(encoding="utf-8"))["results"]}
    present = {name(p) for p in result_files()}
    return sorted(present - listed), sorted(listed - present)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that index.json lists every file")
    args = parser.parse_args(argv)
    if args.check:
        missing, gone = unlisted()
        if missing or gone:
            sys.exit(f"bench/results/index.json is stale (missing {missing}, gone {gone}): run python -m bench.index")
        return
    index = build_index()
    write_text_atomic(str(RESULTS), "index.json", json.dumps(index, indent=1) + "\n")
    write_text_atomic(str(RESULTS), "INDEX.md", markdown(index))
    print(f"indexed {len(index['results'])} files, {len(index['archived'])} archived")


if __name__ == "__main__":
    main()
