"""Arm kinds: a plain dict from the ``kind`` of a config's arm to the function that runs it.

Every function takes ``(spec, pools, cache)`` (the `RunSpec`, its `Pools` and the cache folder) and returns the
run's measurements, ``accuracy`` and ``macro_f1`` on the evaluation rows first; a data-free kind (``cost``) gets
no pools (None) and returns its own measurements (`bench.suite.cost_arms`).
"""

from __future__ import annotations

from bench.suite import cheap_arms
from bench.suite.cost_arms import run_cost
from bench.suite.finetune_arms import run_finetune

ARMS = {
    "linear_probe": cheap_arms.run_linear_probe,
    "label_propagator": cheap_arms.run_label_propagator,
    "selection": cheap_arms.run_selection,
    "labeled_only": run_finetune,
    "full_label": run_finetune,
    "self_training": run_finetune,
    "consistency": run_finetune,
    "label_propagation": run_finetune,
    "cost": run_cost,
}
