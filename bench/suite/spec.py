"""One run of the suite: a dataset, its evaluation split, a label budget, an arm with its settings and a seed.

A `RunSpec` is what the runner executes and what its result file records; its `run_id` (also the file name) is
built from the dataset, split, budget, arm name and seed only, so a run keeps its file when unrelated arms are
added to a config. The settings are compared separately (`RunSpec.matches`): a result file whose recorded spec
differs from the config's is *stale*, and the runner refuses to skip or overwrite it silently.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

SPLITS = ("validation", "test")
CHEAP_KINDS = ("linear_probe", "label_propagator", "selection")
"""Arms on frozen embeddings (`bench.suite.cheap_arms`)."""
FINETUNE_KINDS = ("labeled_only", "full_label", "self_training", "consistency", "label_propagation")
"""Arms that fine-tune the whole model (`bench.suite.finetune_arms`)."""
DATA_FREE_KINDS = ("cost",)
"""Arms that build their own inputs and take no pools (`bench.suite.cost_arms`): they run once per seed, on no
dataset, split or budget."""
NO_DATA = "none"
"""``dataset`` and ``split`` of a run of a data-free kind."""
ALL_LABELS = 0
"""``labels_per_class`` of a run that trains on every label of the training split (the full-label ceiling)."""


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on.

    Parameters:
        dataset (`str`): ``reuters-r8``, ``20newsgroups`` or ``fashion_mnist``; `NO_DATA` for a data-free kind.
        split (`str`): where accuracy is measured: ``validation`` (rows carved from the training split; dev
            configs) or ``test`` (report configs); `NO_DATA` for a data-free kind.
        labels_per_class (`int`): labeled rows per class drawn by `sample_per_class`; `ALL_LABELS` (0) for a
            full-label run or a data-free kind.
        arm (`str`): the arm's name in the config (several names may share one kind).
        kind (`str`): the function that runs it, a key of `bench.suite.arms.ARMS`.
        seed (`int`): pool-sampling and training seed.
        settings (`dict`): the arm's settings (trainer config fields or probe options), quick changes included.
        data (`dict`): the dataset's settings (validation size, unlabeled pool size, rows, max length, ...).
    """

    dataset: str
    split: str
    labels_per_class: int
    arm: str
    kind: str
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """``<dataset>-<split>-k<labels>-<arm>-s<seed>`` (``kall`` for full labels), or ``<kind>-<arm>-s<seed>``
        for a data-free kind; safe as a file name."""
        if self.kind in DATA_FREE_KINDS:
            return safe_name(f"{self.kind}-{self.arm}-s{self.seed}")
        budget = "all" if self.labels_per_class == ALL_LABELS else str(self.labels_per_class)
        return safe_name(f"{self.dataset}-{self.split}-k{budget}-{self.arm}-s{self.seed}")

    @property
    def file_name(self) -> str:
        return f"{self.run_id}.json"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, recorded: dict[str, Any]) -> bool:
        """Whether a result file's recorded ``spec`` is this spec (same fields and settings, after a JSON round
        trip: tuples compare as lists)."""
        return _jsonable(self.to_dict()) == _jsonable(recorded)


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._@=+-]`` replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._@=+-]", "_", text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
