"""Run a suite config: every run whose result file is missing, one JSON per run, then the folder's index.

Layout of an output folder::

    <out>/runs/<run id>.json   # one run: provenance (bench.common.write_result), its spec, its measurements
    <out>/index.json           # every run file of the folder with its spec and accuracy, refreshed after each run
    <out>/cache/               # embeddings and temporary training folders (not results; git-ignored)

A run whose file exists is skipped; a file whose recorded spec differs from the config's (settings changed, or a
``--quick`` run) is *stale*: the runner stops before running anything and names it, until ``--overwrite``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Run, write_result
from bench.suite.config import SuiteConfig, load_config
from bench.suite.spec import DATA_FREE_KINDS, RunSpec

RUNS, INDEX, CACHE = "runs", "index.json", "cache"
SCRIPT = "bench"


def result_path(out: Path, spec: RunSpec) -> Path:
    return out / RUNS / spec.file_name


def status(out: Path, spec: RunSpec) -> str:
    """``todo`` (no result file), ``done`` (a file recording this spec) or ``stale`` (a file recording another)."""
    path = result_path(out, spec)
    if not path.exists():
        return "todo"
    recorded = json.loads(path.read_text(encoding="utf-8")).get("spec", {})
    return "done" if spec.matches(recorded) else "stale"


def select(specs: Sequence[RunSpec], only: Sequence[str] | None) -> list[RunSpec]:
    """The specs whose run id matches one of the ``only`` glob patterns (all when None or empty)."""
    return [s for s in specs if not only or any(fnmatch.fnmatchcase(s.run_id, p) for p in only)]


def describe(spec: RunSpec) -> str:
    """One line naming the run."""
    if spec.kind in DATA_FREE_KINDS:
        return f"{spec.arm} ({spec.kind}: {spec.settings.get('measure')}), seed {spec.seed}"
    return (f"{spec.arm} ({spec.kind}) on {spec.dataset} {spec.split}, {spec.labels_per_class or 'all'} labels per "
            f"class, seed {spec.seed}")


def run_one(spec: RunSpec, out: Path, argv: Sequence[str]) -> dict[str, Any]:
    """Run one spec and write its result file atomically; return the file's record. A data-free kind gets no
    pools (None) and its record no ``rows``."""
    from bench.suite.arms import ARMS
    from bench.suite.data import build_pools

    run = Run(SCRIPT, list(argv), spec.to_dict())
    pools = None if spec.kind in DATA_FREE_KINDS else build_pools(spec)
    result = ARMS[spec.kind](spec, pools, out / CACHE)
    rows = {} if pools is None else {"rows": {"train": len(pools.train), "labeled": len(pools.labeled),
                                              "unlabeled": len(pools.unlabeled), "evaluation": len(pools.evaluation)}}
    report = {"description": describe(spec), "run_id": spec.run_id, "spec": spec.to_dict(), **rows,
              "result": result}
    write_result(result_path(out, spec), report, run)
    return report


def outcome(result: dict[str, Any]) -> str:
    """A run's headline for the progress line: its accuracy, or a cost run's ratio."""
    if "ratio" in result:
        return f"ratio {result['ratio']:.2f} ({result['ratio_of']})"
    return f"accuracy {result['accuracy']:.4f}"


def index_entry(record: dict[str, Any], file: str) -> dict[str, Any]:
    spec, result = record["spec"], record["result"]
    return {"file": file, "run_id": record["run_id"], **{k: spec[k] for k in (
        "dataset", "split", "labels_per_class", "arm", "kind", "seed")},
        "accuracy": result.get("accuracy"), "macro_f1": result.get("macro_f1"),
        **({"ratio": result["ratio"]} if "ratio" in result else {}),
        "seconds": record["provenance"].get("seconds"), "commit": record["provenance"]["git"].get("commit")}


def write_index(out: Path, config: SuiteConfig, run: Run) -> Path:
    """(Re)write ``<out>/index.json`` from every run file in ``<out>/runs``, with the configs that wrote into the
    folder (several configs may share one, e.g. report_text.yaml and budget_curves.yaml)."""
    files = sorted((out / RUNS).glob("*.json"))
    runs = [index_entry(json.loads(p.read_text(encoding="utf-8")), f"{RUNS}/{p.name}") for p in files]
    configs = {config.path: config.description}
    if (out / INDEX).exists():
        configs = {**json.loads((out / INDEX).read_text(encoding="utf-8")).get("configs", {}), **configs}
    report = {"description": f"Benchmark suite, {len(runs)} runs: " + "; ".join(configs.values()),
              "configs": dict(sorted(configs.items())), "runs": runs}
    return Path(write_result(out / INDEX, report, run))


def quiet_libraries() -> None:
    """No progress bars from datasets, no weight-loading reports from transformers (warnings stay)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (bench/configs/*.yaml)")
    parser.add_argument("--out", default=None, help="output folder (default: the config's output; with --quick "
                                                    "that folder with a -quick suffix)")
    parser.add_argument("--quick", action="store_true", help="shrink the config to finish in a few minutes")
    parser.add_argument("--dry_run", action="store_true", help="list the runs and whether each is done")
    parser.add_argument("--overwrite", action="store_true", help="rerun runs whose result file exists")
    parser.add_argument("--only", nargs="+", default=None, metavar="GLOB", help="run ids to run (glob patterns)")
    parser.add_argument("--keep_going", action="store_true",
                        help="when a run fails, print its traceback and go on with the others; exit with an error "
                             "naming the failed runs at the end")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    return parser


def main(argv: Sequence[str]) -> None:
    args = build_parser().parse_args(argv)
    config = load_config(args.config, quick=args.quick, output=args.out)
    out = Path(config.output)
    specs = select(config.specs, args.only)
    if not specs:
        raise SystemExit(f"--only {' '.join(args.only)} matches none of the {len(config.specs)} runs of "
                         f"{config.path}; --dry_run without --only lists them")
    states = {s.run_id: status(out, s) for s in specs}
    if args.dry_run:
        for spec in specs:
            print(f"{states[spec.run_id]:>5}  {spec.run_id}")
        counts = {state: list(states.values()).count(state) for state in ("done", "todo", "stale")}
        print(f"{len(specs)} runs in {out}: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
        return
    stale = [run_id for run_id, state in states.items() if state == "stale"]
    if stale and not args.overwrite:
        raise SystemExit(f"{len(stale)} result files in {out / RUNS} record other settings than {config.path} "
                         f"(first: {stale[0]}); rerun them with --overwrite, or rename the arm to keep both")
    quiet_libraries()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    todo = [s for s in specs if args.overwrite or states[s.run_id] != "done"]
    print(f"{len(todo)} of {len(specs)} runs to do in {out}", flush=True)
    index_run = Run(SCRIPT, list(argv), {"config": config.path, "quick": args.quick, "out": str(out)})
    failed = []
    for number, spec in enumerate(todo, 1):
        start = time.time()
        try:
            record = run_one(spec, out, argv)
        except Exception:
            if not args.keep_going:
                raise
            traceback.print_exc()
            failed.append(spec.run_id)
            print(f"[{number}/{len(todo)}] {spec.run_id}: FAILED (traceback above)", flush=True)
            continue
        print(f"[{number}/{len(todo)}] {spec.run_id}: {outcome(record['result'])} ({time.time() - start:.0f} s)",
              flush=True)
        write_index(out, config, index_run)
    if not todo and (out / RUNS).is_dir():
        write_index(out, config, index_run)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(todo)} runs failed: {', '.join(failed)}")
