"""Overhead of a consistency training step over the raw forward+backward of the same tensors.

For one model and one batch shape (labeled batch B, unlabeled μB rows), times alternately:

- ``ssl``: `ConsistencyTrainer.training_step` (augmentation, teacher forward on the weak view, thresholds,
  distribution alignment when asked, losses, metrics, backward), drawing unlabeled rows from its stream;
- ``raw``: the same tensors through the model without any SSL logic: a no-grad forward on the weak view
  and one forward+backward on [labeled; strong view] with plain cross-entropy (views precomputed).

It also times where augmentation runs: in the step (``augment_in="step"``) or in the stream's collator,
with 0 or 1 DataLoader workers. Prints the ratios (target ssl/raw <= 1.10) and writes JSON.

    python -m bench.consistency_step --model minilm
    python -m bench.consistency_step --model dinov2
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer

from bench.common import make_parser, start_run, write_result
from hf_ssl import ConsistencyConfig, ConsistencyTrainer, dinov2_path, load_text_dataset, minilm_path, sample_per_class
from hf_ssl.data.collators import concat_inputs


def pools(model_name: str, n_unlabeled: int, max_length: int, image_size: int):
    if model_name == "minilm":
        labeled, unlabeled = sample_per_class(load_text_dataset("reuters-r8")["train"], 5, seed=0,
                                              max_unlabeled=n_unlabeled)
        unlabeled = unlabeled.remove_columns("ssl_truth")
        tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        labeled, unlabeled = (d.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
                                    batched=True, remove_columns=["text"]) for d in (labeled, unlabeled))
        names = labeled.features["label"].names
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(names),
                                                                   id2label=dict(enumerate(names)))
        return model, tokenizer, labeled, unlabeled
    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(40 + n_unlabeled, 3, image_size, image_size)).astype(np.float32)
    data = Dataset.from_dict({"pixel_values": list(pixels), "label": (np.arange(len(pixels)) % 10).tolist()})
    data = data.with_format("torch")
    model = AutoModelForImageClassification.from_pretrained(dinov2_path(), num_labels=10)
    return model, None, data.select(range(40)), data.select(range(40, len(pixels))).remove_columns("label")


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


STEP_SETTINGS = ("batch_size", "mu", "method", "threshold_strategy", "repeats")
"""The arguments of `measure` after the pools and placement (the script's flags of the same names)."""


def measure(model, tokenizer, labeled, unlabeled, placement: str, workers: int, *, batch_size: int = 8,
            mu: float = 1.0, method: str = "fixmatch", threshold_strategy: str = "freematch",
            repeats: int = 20) -> dict:
    """Times of the SSL step and of the raw step on the same tensors, measured alternately after one warm-up each.

    Args:
        model, tokenizer, labeled, unlabeled: what `pools` returns.
        placement: ``augment_in`` of the consistency config (``step`` or ``collator``).
        workers: DataLoader workers of the unlabeled stream.
        batch_size: labeled rows per step (the unlabeled batch is ``mu`` times as many).
        mu: unlabeled batch ratio.
        method: consistency method.
        threshold_strategy: its threshold strategy (distribution alignment is on).
        repeats: timed steps of each kind.

    Returns:
        ``raw_seconds`` and ``ssl_seconds`` (every timed step), their medians ``raw_median_s`` and
        ``ssl_median_s``, and ``ratio`` (SSL over raw).
    """
    config = ConsistencyConfig(output_dir="/tmp/hf_ssl_step", report_to="none", use_cpu=True, seed=0,
                               per_device_train_batch_size=batch_size, unlabeled_batch_ratio=mu,
                               method=method, threshold_strategy=threshold_strategy,
                               augment_in=placement, dataloader_num_workers=workers, distribution_alignment=True)
    trainer = ConsistencyTrainer(model=model, args=config, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                 processing_class=tokenizer)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    # Fixed views for the raw step (same shapes as the SSL step's).
    views = trainer.next_unlabeled_views()
    labeled_inputs = {k: v for k, v in batch.items() if k not in ("labels", "ssl_index", "ssl_truth")}
    labels = batch["labels"]
    pad = int(getattr(tokenizer, "pad_token_id", None) or 0)

    def raw_step():
        with torch.no_grad():
            model(**views["weak"][0])
        merged = concat_inputs([labeled_inputs, views["strong"]], pad)
        logits = model(**merged).logits
        n = labels.shape[0]
        loss = F.cross_entropy(logits[:n], labels) + F.cross_entropy(logits[n:], logits[n:].argmax(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    def ssl_step():
        trainer.training_step(model, dict(batch))
        model.zero_grad(set_to_none=True)

    raw_step(), ssl_step()  # warm-up
    raw_times, ssl_times = [], []
    for _ in range(repeats):  # alternate so that machine load affects both alike
        raw_times += timed(raw_step, 1)
        ssl_times += timed(ssl_step, 1)
    result = {"raw_seconds": raw_times, "ssl_seconds": ssl_times, "raw_median_s": statistics.median(raw_times),
              "ssl_median_s": statistics.median(ssl_times)}
    result["ratio"] = result["ssl_median_s"] / result["raw_median_s"]
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--model", choices=("minilm", "dinov2"), default="minilm")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--mu", type=float, default=1.0)
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=56)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--method", default="fixmatch")
    parser.add_argument("--threshold_strategy", default="freematch")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.out = args.out or f"bench/results/consistency_step_{args.model}.json"
    run = start_run(args, __file__, argv)
    torch.manual_seed(0)
    model, tokenizer, labeled, unlabeled = pools(args.model, 400, args.max_length, args.image_size)
    report = {}
    for placement, workers in (("step", 0), ("collator", 0), ("collator", 1)):
        result = measure(model, tokenizer, labeled, unlabeled, placement, workers,
                         **{name: getattr(args, name) for name in STEP_SETTINGS})
        report[f"augment_in={placement},workers={workers}"] = result
        print(f"augment_in={placement:<8} workers={workers}: raw {result['raw_median_s']:.3f}s  "
              f"ssl {result['ssl_median_s']:.3f}s  ratio {result['ratio']:.3f}", flush=True)
    write_result(args.out, report, run)


if __name__ == "__main__":
    main()
