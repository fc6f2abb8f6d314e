"""Run by tests/test_embeddings.py under `accelerate launch`: every rank encodes an uneven number of texts with a
tiny BERT and saves what it got back to <out>/rank<i>.npy (plus forward-call counts in <out>/rank<i>.json)."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for helpers

import numpy as np  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import BertTokenizerFast  # noqa: E402

from helpers.tiny import tiny_bert, variable_texts  # noqa: E402
from hf_ssl import encode  # noqa: E402
from hf_ssl.scripts.utils import leave_together  # noqa: E402


def main(tokenizer_dir: str, out: str, n: int) -> None:
    tokenizer = BertTokenizerFast.from_pretrained(tokenizer_dir)
    model = tiny_bert(seed=0)
    calls = [0]
    model.bert.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    data = Dataset.from_dict({"text": variable_texts(n)})
    accelerator = Accelerator(cpu=True)
    kwargs = {"batch_size": 4, "max_length": 16, "show_progress": False}
    explicit = encode(model, data, tokenizer, accelerator=accelerator, **kwargs)
    detected = encode(model, data, tokenizer, **kwargs)  # multi-process state found from WORLD_SIZE
    assert np.array_equal(explicit, detected)
    cache = os.path.join(out, "cache")
    encode(model, data, tokenizer, cache_dir=cache, accelerator=accelerator, **kwargs)
    before = calls[0]
    cached = encode(model, data, tokenizer, cache_dir=cache, accelerator=accelerator, **kwargs)
    assert np.array_equal(explicit, cached)
    rank = accelerator.process_index
    np.save(os.path.join(out, f"rank{rank}.npy"), explicit)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump({"num_processes": accelerator.num_processes, "forward_calls": before,
                   "forward_calls_on_cache_hit": calls[0] - before}, handle)
    leave_together(accelerator)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
