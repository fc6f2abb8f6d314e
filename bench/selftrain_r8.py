"""Labeled-only fine-tuning vs self-training vs a linear probe on Reuters R8, 5 labels per class, 3 seeds.

Every arm uses the packaged all-MiniLM-L6-v2. Labeled-only fine-tuning is round 0 of the same run
(same optimizer, schedule, epochs and batch size as each self-training round); the linear probe is a
logistic regression on frozen mean-pooled embeddings of the same 40 labeled texts.

    python -m bench.selftrain_r8 --seeds 0 1 2 --out bench/results/selftrain_r8.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from transformers import AutoModel, AutoTokenizer

from bench.common import PROBE_C, classifier, make_parser, start_run, summary, unlabeled_limit, write_result
from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer, load_text_dataset, minilm_path, sample_per_class
from hf_ssl.data.metrics import classification_metrics


@torch.inference_mode()
def embed(texts: list[str], tokenizer, model, max_length: int, batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (length-sorted batches)."""
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def run_seed(seed: int, args: argparse.Namespace, raw, tokenizer, test_embeddings: np.ndarray | None) -> dict:
    names = raw["train"].features["label"].names
    labeled, unlabeled = sample_per_class(raw["train"], args.labels_per_class, seed=seed,
                                          max_unlabeled=unlabeled_limit(args.max_unlabeled))
    test = raw["test"]

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=args.max_length)

    labeled_t, unlabeled_t, test_t = (d.map(tokenize, batched=True) for d in (labeled, unlabeled, test))
    result: dict = {"seed": seed, "labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test)}
    if test_embeddings is not None:
        encoder = AutoModel.from_pretrained(minilm_path())
        x = embed(labeled["text"], tokenizer, encoder, args.max_length)
        probe = LogisticRegression(C=PROBE_C, max_iter=2000).fit(x, labeled["label"])
        result["linear_probe"] = float((probe.predict(test_embeddings) == np.asarray(test["label"])).mean())
    model = classifier("text", names)
    config = SelfTrainingConfig(output_dir=os.path.join(args.workdir, f"seed{seed}"), seed=seed, report_to="none",
                                save_strategy="no", disable_tqdm=True, per_device_eval_batch_size=32,
                                **json.loads(args.config))
    trainer = SelfTrainingTrainer(model=model, args=config, train_dataset=labeled_t, unlabeled_dataset=unlabeled_t,
                                  eval_dataset=test_t, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    start = time.time()
    trainer.train()
    result["seconds"] = round(time.time() - start, 1)
    result["per_round_accuracy"] = [r["eval"]["eval_accuracy"] for r in trainer.rounds]
    result["labeled_only"] = result["per_round_accuracy"][0]
    result["self_training"] = result["per_round_accuracy"][-1]
    result["pseudo_labels"] = [r.get("pseudo_labels") for r in trainer.rounds]
    result["termination"] = trainer.termination_condition
    print(json.dumps({k: v for k, v in result.items() if k != "pseudo_labels"}), flush=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out="bench/results/selftrain_r8.json", seeds=[0, 1, 2])
    parser.add_argument("--labels_per_class", type=int, default=5)
    parser.add_argument("--max_unlabeled", type=int, default=1500)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--config", default="{}", help="JSON of SelfTrainingConfig overrides")
    parser.add_argument("--no_probe", action="store_true")
    parser.add_argument("--workdir", default="/tmp/hf_ssl_bench")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)
    raw = load_text_dataset("reuters-r8")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    test_embeddings = None
    if not args.no_probe:
        test_embeddings = embed(raw["test"]["text"], tokenizer, AutoModel.from_pretrained(minilm_path()),
                                args.max_length)
    runs = [run_seed(seed, args, raw, tokenizer, test_embeddings) for seed in args.seeds]
    report = {"config": SelfTrainingConfig(output_dir="x", **json.loads(args.config)).to_dict(),
              "runs": runs}
    for arm in ("labeled_only", "self_training", "linear_probe"):
        if all(arm in r for r in runs):
            report[arm] = summary([r[arm] for r in runs])
    gains = [r["self_training"] - r["labeled_only"] for r in runs]
    report["gain"] = summary(gains)
    report["self_training_beats_labeled_only_every_seed"] = all(g >= 0 for g in gains)
    for key in ("labeled_only", "self_training", "linear_probe", "gain"):
        if key in report:
            s = report[key]
            print(f"{key:>14}: mean {s['mean']:.4f}  min {s['min']:.4f}  max {s['max']:.4f}  sd {s['stdev']:.4f}")
    write_result(args.out, report, run)


if __name__ == "__main__":
    main()
