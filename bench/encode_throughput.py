"""Throughput of `hf_ssl.encode` (length-sorted batches, dynamic padding) against a naive loop (fixed padding to
max_length, dataset order) on Reuters R8 texts with all-MiniLM-L6-v2: same model, batch size, max_length and
pooling, both timed in the same run (alternating, best of --repeats), and the two embeddings compared.

    python -m bench.encode_throughput --n 1000 --out bench/results/encode_throughput.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from bench.common import make_parser, start_run, write_result
from hf_ssl import encode, load_text_dataset, minilm_path


@torch.inference_mode()
def encode_naive(model, texts: list[str], tokenizer, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings with every batch padded to max_length, in the given order.

    Args:
        model: a BERT-like base model.
        texts: the texts.
        tokenizer: its tokenizer.
        batch_size: rows per forward pass.
        max_length: truncation and padding length.
    """
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                          padding="max_length", return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__, out="bench/results/encode_throughput.json", threads=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    return parser


def load_inputs(n: int) -> tuple[Any, Any, Any]:
    """(MiniLM base model, its tokenizer, the first ``n`` R8 training texts after a shuffle by seed 0)."""
    data = load_text_dataset("reuters-r8")["train"].shuffle(seed=0).select(range(n))
    return AutoModel.from_pretrained(minilm_path()), AutoTokenizer.from_pretrained(minilm_path()), data


def compare(model: Any, tokenizer: Any, data: Any, batch_size: int = 64, max_length: int = 128,
            repeats: int = 2) -> dict[str, Any]:
    """`hf_ssl.encode` against `encode_naive` on the ``text`` column of ``data``: one warm-up batch each, then
    ``repeats`` alternating timed passes over all rows; the ratio is naive over encode on the best pass of each.

    Returns:
        ``token_lengths``, ``seconds`` (every pass), ``best_seconds``, ``rows_per_second``,
        ``speed_ratio_encode_over_naive``, ``target_ratio_ge_1.5`` and the two embeddings' ``agreement``.
    """
    texts = list(data["text"])
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])

    def run_encode() -> np.ndarray:
        return encode(model, data, tokenizer, pooling="mean", batch_size=batch_size, max_length=max_length,
                      show_progress=False)

    def run_naive() -> np.ndarray:
        return encode_naive(model, texts, tokenizer, batch_size, max_length)

    encode(model, data.select(range(min(batch_size, len(data)))), tokenizer, show_progress=False)  # warm-up
    encode_naive(model, texts[:batch_size], tokenizer, batch_size, max_length)
    times: dict[str, list[float]] = {"naive": [], "encode": []}
    results = {}
    for rep in range(repeats):
        order = [("naive", run_naive), ("encode", run_encode)]
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
            print(f"repeat {rep} {name:<6} {times[name][-1]:7.2f} s", flush=True)

    best = {name: min(values) for name, values in times.items()}
    ratio = best["naive"] / best["encode"]
    diff = np.abs(results["encode"] - results["naive"])
    cosine = np.einsum("ij,ij->i", results["encode"], results["naive"])
    agree = bool(np.allclose(results["encode"], results["naive"], atol=1e-5, rtol=1e-4))
    return {
        "token_lengths": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                          "share_at_max_length": float((lengths == max_length).mean())},
        "seconds": times, "best_seconds": best,
        "rows_per_second": {name: len(texts) / t for name, t in best.items()},
        "speed_ratio_encode_over_naive": ratio, "target_ratio_ge_1.5": ratio >= 1.5,
        "agreement": {"allclose_atol_1e-5": agree, "max_abs_diff": float(diff.max()),
                      "min_cosine": float(cosine.min())},
    }


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run = start_run(args, __file__, argv)

    model, tokenizer, data = load_inputs(args.n)
    report = {"model": "all-MiniLM-L6-v2", **compare(model, tokenizer, data, args.batch_size, args.max_length,
                                                      args.repeats)}
    best, ratio, agreement = report["best_seconds"], report["speed_ratio_encode_over_naive"], report["agreement"]
    print(f"texts {args.n}, batch {args.batch_size}, max_length {args.max_length}, mean tokens "
          f"{report['token_lengths']['mean']:.1f}, torch threads {torch.get_num_threads()}")
    for name in ("naive", "encode"):
        print(f"{name:<7} best {best[name]:7.2f} s  {args.n / best[name]:7.1f} rows/s")
    print(f"speed ratio encode/naive: {ratio:.2f}x (target >= 1.5: {'met' if ratio >= 1.5 else 'MISSED'})")
    print(f"embeddings agree: allclose(atol=1e-5)={agreement['allclose_atol_1e-5']}  max |diff| "
          f"{agreement['max_abs_diff']:.2e}  min cosine {agreement['min_cosine']:.6f}")
    write_result(args.out, report, run)


if __name__ == "__main__":
    main()
