"""Settings of the ``cost`` arms (`bench.suite.cost_arms`): what each ``settings.measure`` takes, its defaults and
what ``--quick`` shrinks it to. No heavy imports, so that configs load without torch.

Every measure also takes ``threads`` (torch threads during the measurement; None leaves the runner's) and
``repeats`` (timed calls of each side, alternating).
"""

from __future__ import annotations

from typing import Any

COMMON: dict[str, Any] = {"threads": None}
MEASURES: dict[str, dict[str, Any]] = {
    # ConsistencyTrainer.training_step over a raw forward+backward of the same tensors (bench.consistency_step).
    "ssl_step": {
        "model": "minilm",
        "batch_size": 8,
        "mu": 1.0,
        "max_length": 64,
        "image_size": 56,
        "n_unlabeled": 400,
        "augment_in": "collator",
        "workers": 0,
        "method": "fixmatch",
        "threshold_strategy": "freematch",
        "repeats": 15,
    },
    # hf_ssl.encode over a fixed-padding loop on R8 texts with MiniLM (bench.encode_throughput).
    "encode": {"n": 1000, "batch_size": 64, "max_length": 128, "repeats": 3},
    # LabelPropagator over scikit-learn LabelSpreading(kernel="knn") on clustered vectors (bench.labelprop_scale).
    "label_propagator_synthetic": {
        "n": 50_000,
        "dim": 384,
        "classes": 10,
        "modes": 4,
        "spread": 0.8,
        "noise": 3.0,
        "label_fraction": 0.01,
        "n_neighbors": 10,
        "repeats": 1,
    },
    # The same on Fashion-MNIST train + test as pixels, PCA to pca_dim; rows: a subset after a shuffle by the seed
    # (negative: all 70,000).
    "label_propagator_fashion": {"rows": -1, "pca_dim": 50, "labels_per_class": 10, "n_neighbors": 10, "repeats": 1},
    # Batched strong image view over a per-image loop (bench.augment_speed).
    "augment": {"n": 448, "size": 56, "repeats": 11},
}
CHOICES: dict[str, tuple[str, ...]] = {"model": ("minilm", "dinov2"), "augment_in": ("step", "collator")}
QUICK: dict[str, dict[str, int]] = {
    "ssl_step": {"n_unlabeled": 32, "repeats": 2},
    "encode": {"n": 64, "repeats": 1},
    "label_propagator_synthetic": {"n": 2000, "repeats": 1},
    "label_propagator_fashion": {"rows": 2000, "repeats": 1},
    "augment": {"n": 16, "repeats": 2},
}
"""``--quick`` caps of each measure's settings (a negative "all" counts as larger)."""


def _number(value: Any, default: Any) -> bool:
    if isinstance(value, bool):
        return isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def cost_settings(given: dict[str, Any], quick: bool) -> tuple[dict[str, Any], str | None]:
    """The full settings of a cost arm (its measure's defaults, then ``given``, then the ``--quick`` caps) and the
    first problem found as ``(key, message)`` text, or None when there is none.

    Returns:
        ``(settings, error)``: ``error`` is ``"<key>: <what is wrong>"`` relative to the arm's ``settings``.
    """
    measure = given.get("measure")
    if measure not in MEASURES:
        return given, f"measure: expected one of {', '.join(MEASURES)}, got {measure!r}"
    defaults = {**COMMON, **MEASURES[measure]}
    unknown = sorted(set(given) - set(defaults) - {"measure"})
    if unknown:
        return given, f"{unknown[0]}: unknown setting of measure {measure!r}; allowed: {', '.join(defaults)}"
    settings = {"measure": measure, **defaults, **given}
    for key, value in settings.items():
        if key == "threads":
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                return settings, f"threads: expected an integer >= 1 or null, got {value!r}"
        elif key in CHOICES:
            if value not in CHOICES[key]:
                return settings, f"{key}: expected one of {', '.join(CHOICES[key])}, got {value!r}"
        elif key != "measure" and not _number(value, defaults[key]):
            return settings, f"{key}: expected {type(defaults[key]).__name__} like {defaults[key]!r}, got {value!r}"
    if settings["repeats"] < 1:
        return settings, f"repeats: expected at least 1, got {settings['repeats']}"
    if quick:
        for key, cap in QUICK[measure].items():
            if settings[key] < 0 or settings[key] > cap:
                settings[key] = cap
    return settings, None
