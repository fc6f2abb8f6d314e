"""Labeled-only fine-tuning vs every consistency method (and label propagation in the loop), over seeds, on R8
(MiniLM) or Fashion-MNIST (DINOv2-S).

Every arm trains the same model with the same optimizer, schedule, epochs over the labeled pool and
labeled batch size; consistency arms add μ× unlabeled rows per step (from each method's published settings:
no graph prior, FixMatch at τ 0.95; ``--config`` changes them), and ``label_propagation``
(`LabelPropagationTrainer`, not run by default) adds μ× pseudo-labeled rows after its labeled-only warm-up.
``full_label`` fine-tunes on the whole training split (the ceiling of the "gap closed" figure);
``pool_oracle`` (not run by default) fine-tunes the same way on the labeled rows plus the unlabeled pool with its true
labels, the ceiling of any pseudo-labelling of that pool. ``pool_graph`` (not run by default) trains the same way on
the pool labelled by the graph prior's label spreading over the starting model's embeddings, and ``pool_graph@0.9``
on those labels with randomly chosen wrong ones set right until 90% of the pool is right: how accurate pseudo-labels
of the pool must be for a target accuracy, with the graph's own kind of errors. ``--head_init
linear_probe`` starts every arm from a linear-probe head (LP-FT); ``labeled_only_random_head`` then adds the
labeled-only baseline with the model's own head, and gains are measured against the better of the two labeled-only
baselines (by mean). Results are appended
to ``--out`` after every run, and runs already there are skipped, so the script can be stopped and restarted.

    python -m bench.consistency_bench --dataset r8 --seeds 0 1 2
    python -m bench.consistency_bench --dataset fashion_mnist --seeds 0 1 2
    python -m bench.consistency_bench --dataset r8 --arms fixmatch@softmatch \
        --config '{"fixmatch@softmatch": {"threshold_strategy": "softmatch"}}'
    python -m bench.consistency_bench --dataset r8 --arms labeled_only label_propagation \
        --out bench/results/label_propagation_trainer_r8.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from transformers import AutoTokenizer

from bench.common import (
    Run,
    classifier,
    fashion_pools,
    fashion_test,
    labeled_only_trainer,
    make_parser,
    start_run,
    summary,
    unlabeled_limit,
    write_result,
)
from hf_ssl import (
    ConsistencyConfig,
    ConsistencyTrainer,
    ImageAugmenter,
    LabelPropagationConfig,
    LabelPropagationTrainer,
    SSLConfig,
    SSLTrainer,
    contrastive_adapt,
    load_fashion_mnist,
    load_text_dataset,
    minilm_path,
    sample_per_class,
)
from hf_ssl.data.images import pixel_dataset
from hf_ssl.data.metrics import classification_metrics

CONSISTENCY_ARMS = ("labeled_only", "fixmatch", "uda", "mean_teacher", "pi_model", "mixmatch")
# labeled_only_random_head: the labeled-only baseline with the model's own random head whatever --head_init says,
# so that a linear-probe start (LP-FT) is judged against the stronger of the two labeled-only baselines.
BASELINES = ("labeled_only", "labeled_only_random_head")
ARMS = (*CONSISTENCY_ARMS, "labeled_only_random_head", "label_propagation", "full_label", "pool_oracle", "pool_graph")
VARIANT_ARMS = (*CONSISTENCY_ARMS[1:], "pool_graph")  # arms that take an @<name> (pool_graph@<accuracy>)


def pools(args: argparse.Namespace, seed: int) -> tuple[Dataset, Dataset, Dataset, Dataset, list[str], object]:
    """(labeled, unlabeled, test, full train, class names, processing class) for one seed."""
    if args.dataset == "r8":
        raw = load_text_dataset("reuters-r8")
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())

        def tokenize(batch):
            return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

        labeled, unlabeled = sample_per_class(raw["train"], args.labels_per_class, seed=seed,
                                              max_unlabeled=unlabeled_limit(args.max_unlabeled))
        test = raw["test"] if args.test_rows < 0 else raw["test"].shuffle(seed=1234).select(range(args.test_rows))
        out = [d.map(tokenize, batched=True, remove_columns=["text"]) for d in (labeled, unlabeled, test, raw["train"])]
        return (*out, raw["train"].features["label"].names, tokenizer)
    raw = load_fashion_mnist()
    train, labeled, unlabeled = fashion_pools(raw, seed, args.labels_per_class, args.max_unlabeled, args.train_subset)
    test = fashion_test(raw, args.test_rows)
    out = [pixel_dataset(d, size=args.image_size) for d in (labeled, unlabeled, test, train)]
    return (*out, raw["train"].features["label"].names, None)


def new_model(args: argparse.Namespace, names: list[str], path: str | None = None):
    extra = {"num_hidden_layers": args.num_layers} if args.num_layers else {}  # keeps the lowest layers
    model = classifier("text" if args.dataset == "r8" else "image", names, path, **extra)
    if args.freeze_layers:
        base = model.base_model
        for module in (base.embeddings, *base.encoder.layer[:args.freeze_layers]):
            module.requires_grad_(False)
    return model


def adapted_encoder(args: argparse.Namespace, seed: int, unlabeled: Dataset, names: list[str]) -> str:
    """Folder of the encoder adapted to this seed's unlabeled pool by `contrastive_adapt` (``--adapt_steps`` SimCLR
    steps, 64 rows per step, ``--learning_rate``), made once per seed and shared by every ``+adapted`` arm. Steps,
    batch, learning rate, temperature and augmentations match ``ConsistencyConfig(contrastive_steps=...)`` with its
    defaults, without repeating the adaptation for each arm; the random stream differs from the trainer's, so the
    weights are not bit-identical to what the trainer would produce."""
    path = os.path.join(args.workdir, f"adapted-{args.dataset}-seed{seed}-steps{args.adapt_steps}-pool"
                                      f"{len(unlabeled)}-px{args.image_size}")
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    torch.manual_seed(seed)
    model = new_model(args, names)
    loader = torch.utils.data.DataLoader(unlabeled.select_columns(["pixel_values"]), batch_size=64, shuffle=True,
                                         drop_last=True, generator=torch.Generator().manual_seed(seed))
    record = contrastive_adapt(model, loader, ImageAugmenter(), steps=args.adapt_steps,
                               learning_rate=args.learning_rate, seed=seed)
    print(json.dumps({"adapted": path, **record}), flush=True)
    model.base_model.save_pretrained(f"{path}.tmp")
    os.replace(f"{path}.tmp", path)
    return path


def published_settings(method: str) -> dict:
    """The `ConsistencyConfig` fields whose package defaults differ from the method's paper, at the paper's values:
    this script's arms start from them (``--config`` changes them)."""
    return {"graph_prior_weight": 0.0, **({"threshold": 0.95} if method == "fixmatch" else {})}


def graph_pool_labels(arm: str, seed: int, trainer_kwargs: dict, common: dict, labeled: Dataset,
                      unlabeled: Dataset) -> tuple[np.ndarray, dict]:
    """Pool labels of a ``pool_graph[@<accuracy>]`` arm: the classes the graph prior would start from (label
    spreading over the model's embeddings of both pools, `GraphSpreadingMixin.spread_labels` with the `GraphConfig`
    defaults), then, for ``@<accuracy>``, randomly chosen wrong rows set to their true class until that fraction of
    the pool is right. Returns the labels and a record of the graph's and the labels' accuracy."""
    truth = np.asarray(unlabeled["ssl_truth"])
    spreader = ConsistencyTrainer(args=ConsistencyConfig(**common), train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  **trainer_kwargs)
    graph = spreader.spread_labels().transduction_[len(labeled):]
    labels = graph.copy()
    if "@" in arm:
        target = float(arm.split("@")[1])
        wrong = np.flatnonzero(labels != truth)
        fix = max(0, int(np.ceil(target * len(truth))) - int((labels == truth).sum()))
        chosen = np.random.default_rng(seed).permutation(wrong)[:fix]
        labels[chosen] = truth[chosen]
    return labels, {"graph_accuracy": float((graph == truth).mean()),
                    "pool_label_accuracy": float((labels == truth).mean())}


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> dict:
    labeled, unlabeled, test, full, names, processor = pools(args, seed)
    adapted = arm.endswith("+adapted")
    path = adapted_encoder(args, seed, unlabeled, names) if adapted else None
    result_arm, arm = arm, arm.removesuffix("+adapted")
    torch.manual_seed(seed)
    model = new_model(args, names, path)
    common = dict(output_dir=os.path.join(args.workdir, f"{args.dataset}-{arm}-{seed}"), seed=seed, report_to="none",
                  save_strategy="no", disable_tqdm=True, per_device_train_batch_size=args.batch_size,
                  learning_rate=args.learning_rate, num_train_epochs=args.epochs, logging_steps=10,
                  per_device_eval_batch_size=64, lr_scheduler_type="linear", warmup_steps=0,
                  head_init=args.head_init)
    kwargs = dict(model=model, eval_dataset=test, processing_class=processor, compute_metrics=classification_metrics)
    pool_record: dict = {}
    if arm == "labeled_only_random_head":
        common["head_init"] = "random"
    if arm in BASELINES:
        trainer = labeled_only_trainer(common, labeled, unlabeled, args.dataset == "fashion_mnist", **kwargs)
    elif arm in ("full_label", "pool_oracle") or arm.startswith("pool_graph"):
        # pool_oracle, the ceiling of any pseudo-labelling of this unlabeled pool: the labeled rows plus the pool with
        # its true labels, trained like full_label for the same number of steps; pool_graph: the same with the graph's
        # (partly corrected) labels.
        pool = unlabeled.rename_column("ssl_truth", "label")
        if arm.startswith("pool_graph"):
            labels, pool_record = graph_pool_labels(arm, seed, kwargs, common, labeled, unlabeled)
            pool = pool.remove_columns("label").add_column("label", labels.tolist()).cast_column(
                "label", labeled.features["label"])
        data = full if arm == "full_label" else concatenate_datasets([labeled, pool])
        common.update(num_train_epochs=args.full_epochs * len(full) / len(data), learning_rate=args.full_learning_rate,
                      per_device_train_batch_size=32)
        trainer = SSLTrainer(args=SSLConfig(**common), train_dataset=data, **kwargs)
    elif arm == "label_propagation":
        config = LabelPropagationConfig(**common, unlabeled_batch_ratio=args.mu, **json.loads(args.config).get(arm, {}))
        trainer = LabelPropagationTrainer(args=config, train_dataset=labeled, unlabeled_dataset=unlabeled, **kwargs)
    else:
        method = arm.split("@")[0]
        settings = {**common, **published_settings(method), **json.loads(args.config).get("all", {}),
                    **json.loads(args.config).get(arm, {})}
        config = ConsistencyConfig(**settings, method=method, unlabeled_batch_ratio=args.mu)
        trainer = ConsistencyTrainer(args=config, train_dataset=labeled, unlabeled_dataset=unlabeled, **kwargs)
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    metrics = trainer.evaluate()
    result = {"arm": result_arm, "seed": seed, "accuracy": metrics["eval_accuracy"],
              "macro_f1": metrics.get("eval_macro_f1"),
              "train_seconds": round(seconds, 1), "steps": trainer.state.global_step,
              "labeled": len(trainer.train_dataset), "unlabeled": len(unlabeled), "test": len(test)}
    if isinstance(trainer, ConsistencyTrainer) and arm not in BASELINES:
        result["config"] = {k: getattr(trainer.args, k) for k in (
            "threshold_strategy", "threshold", "temperature", "consistency_loss", "use_ema_teacher",
            "unlabeled_batch_ratio", "unlabeled_loss_weight", "distribution_alignment", "ema_decay", "eval_with_ema",
            "head_init", "graph_prior_weight", "graph_prior_every")}
        if trainer.graph_records:
            result["graph_records"] = trainer.graph_records
        result["epoch_records"] = trainer.epoch_records
    if isinstance(trainer, LabelPropagationTrainer):
        result["propagations"] = trainer.propagations
    result.update(pool_record)
    print(json.dumps({k: v for k, v in result.items() if k not in ("epoch_records", "propagations")}), flush=True)
    return result


def summarise(report: dict) -> None:
    """Per-arm mean/min/max, gain over the labeled-only baseline (the better by mean of ``labeled_only`` and
    ``labeled_only_random_head`` when both ran), and the fraction of the gap to full-label closed."""
    by_arm: dict[str, dict[int, float]] = {}
    for r in report["runs"]:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r["accuracy"]
    ran = [a for a in BASELINES if by_arm.get(a)]
    baseline = max(ran, key=lambda a: statistics.mean(by_arm[a].values())) if ran else "labeled_only"
    base = by_arm.get(baseline, {})
    print(f"baseline: {baseline}")
    full = statistics.mean(by_arm["full_label"].values()) if by_arm.get("full_label") else None
    table = {}
    for arm, accs in by_arm.items():
        row = {**summary(list(accs.values())), "seeds": sorted(accs)}
        shared = [s for s in accs if s in base]
        if arm not in (*BASELINES, "full_label") and shared:
            gains = [accs[s] - base[s] for s in shared]
            row["gain_mean"] = statistics.mean(gains)
            row["worst_gain"] = min(gains)
            base_mean = statistics.mean(base[s] for s in shared)
            if full is not None and full != base_mean:  # no gap, no fraction of it
                row["gap_closed"] = (statistics.mean(accs[s] for s in shared) - base_mean) / (full - base_mean)
        table[arm] = row
        extra = "".join(f"  {k} {row[k]:+.4f}" for k in ("gain_mean", "worst_gain", "gap_closed") if k in row)
        print(f"{arm:>13}: mean {row['mean']:.4f} min {row['min']:.4f} max {row['max']:.4f} "
              f"seeds {row['seeds']}{extra}")
    report["summary"] = table
    report["baseline"] = baseline


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, seeds=[0, 1, 2])
    parser.add_argument("--dataset", choices=("r8", "fashion_mnist"), default="r8")
    parser.add_argument("--arms", nargs="+", default=list(CONSISTENCY_ARMS),
                        help=f"from {ARMS}; a variant of a method is <method>@<name>, configured by --config's "
                             '"<method>@<name>" key (e.g. fixmatch@softmatch)')
    parser.add_argument("--labels_per_class", type=int, default=None, help="default 5 (r8) / 4 (fashion_mnist)")
    parser.add_argument("--max_unlabeled", type=int, default=1500)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--train_subset", type=int, default=6000, help="fashion_mnist: training rows drawn from")
    parser.add_argument("--test_rows", type=int, default=-1, help="-1: full test split (r8); fashion_mnist 2000")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=30)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--full_epochs", type=float, default=2)
    parser.add_argument("--full_learning_rate", type=float, default=5e-5)
    parser.add_argument("--mu", type=float, default=1.0)
    parser.add_argument("--num_layers", type=int, default=0,
                        help="keep only this many lowest encoder layers of the pretrained model (every arm; 0: all)")
    parser.add_argument("--adapt_steps", type=int, default=0,
                        help="fashion_mnist: arms named <arm>+adapted start from the encoder adapted to the seed's "
                             "unlabeled pool by this many SimCLR steps (contrastive_adapt), made once per seed")
    parser.add_argument("--freeze_layers", type=int, default=0,
                        help="freeze the embeddings and this many lowest encoder layers (every arm)")
    parser.add_argument("--head_init", choices=("random", "linear_probe"), default="random",
                        help="every arm's head: as built, or a linear probe fitted on the labeled pool (LP-FT)")
    parser.add_argument("--config", default="{}", help='JSON {"all": {...}, "<method>": {...}} config overrides')
    parser.add_argument("--workdir", default="/tmp/hf_ssl_bench")
    return parser


def check_arms(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject unknown arm names and ``+adapted`` arms without adaptation, through ``parser.error``."""
    bases = [a.removesuffix("+adapted") for a in args.arms]
    unknown = [a for a in bases if a.split("@")[0] not in ARMS or ("@" in a and a.split("@")[0] not in VARIANT_ARMS)]
    unknown += [a for a in bases if a.startswith("pool_graph@") and not 0 < _float_or_nan(a.split("@")[1]) <= 1]
    if any(a.endswith("+adapted") for a in args.arms) and (args.adapt_steps < 1 or args.dataset != "fashion_mnist"):
        parser.error("+adapted arms need --adapt_steps > 0 and --dataset fashion_mnist")
    if unknown:
        parser.error(f"unknown arms {unknown}: choose from {ARMS}, <consistency method>@<name> for a "
                     "variant, or pool_graph@<accuracy in (0, 1]>")


def load_report(path: str, run: Run) -> dict[str, Any]:
    """The results so far at ``path`` (empty when new), with this invocation appended to its ``invocations``."""
    report: dict[str, Any] = {"runs": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    report.setdefault("invocations", []).append({"command": run.command, "git": run.git, "settings": run.settings})
    return report


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arms(parser, args)
    if args.labels_per_class is None:
        args.labels_per_class = 5 if args.dataset == "r8" else 4
    if args.dataset == "fashion_mnist" and args.test_rows < 0:
        args.test_rows = 2000
    args.out = args.out or f"bench/results/consistency_{args.dataset}.json"
    run = start_run(args, __file__, argv)
    report = load_report(args.out, run)
    done = {(r["arm"], r["seed"]) for r in report["runs"]}
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done or (arm == "full_label" and seed != args.seeds[0]):
                continue
            report["runs"].append({**run_arm(arm, seed, args), "commit": run.git["commit"]})
            summarise(report)
            write_result(args.out, report, run)
    summarise(report)


if __name__ == "__main__":
    main()
