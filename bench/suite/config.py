"""Suite configs: a YAML file of datasets, label budgets, arms and seeds, expanded into `RunSpec` s.

A config has these keys (only ``datasets``, ``budgets``, ``seeds`` and ``arms`` are required; a config whose arms
are all data-free, ``cost`` arms, needs no ``datasets`` nor ``budgets``)::

    description: R8 dev set: defaults and variants, scored on 1,000 rows carved from train
    output: bench/results/suite/dev_r8      # folder of the run files and the index
    split: validation                       # validation (dev configs) or test (report configs)
    datasets:                               # name: data settings (see DATA_DEFAULTS)
      reuters-r8: {validation_size: 1000, max_unlabeled: 1500}
    budgets: [5]                            # labels per class
    seeds: [0, 1, 2]
    finetune: {}                            # trainer settings shared by every fine-tuning arm but full_label
    arms:                                   # name: {kind, settings, budgets, seeds, datasets}, all optional
      labeled_only: {}
      labeled_only_lp: {kind: labeled_only, settings: {head_init: linear_probe}}
      fixmatch_graph: {kind: consistency, settings: {method: fixmatch, graph_prior_weight: 0.5}}

An arm's ``kind`` defaults to its name; ``budgets``, ``seeds`` and ``datasets`` restrict or replace the config's
for that arm; a ``full_label`` arm runs once per dataset (every label), on the first seed unless it names seeds.
A ``cost`` arm (`bench.suite.cost_arms`) runs once per seed on no dataset or budget; its ``settings.measure``
names what it times and its other settings are that measure's (`bench.suite.cost_settings.MEASURES`)::

    arms:
      encode: {kind: cost, settings: {measure: encode, threads: 1}}
`load_config` reports the first bad key by its path (``arms.fixmatch.kind``) with what it accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.suite.cost_settings import cost_settings
from bench.suite.spec import ALL_LABELS, CHEAP_KINDS, DATA_FREE_KINDS, FINETUNE_KINDS, NO_DATA, SPLITS, RunSpec
from hf_ssl.assets.backbones import IMAGE_BACKBONES
from hf_ssl.data import images

IMAGE_DATASETS = tuple(name.replace("-", "_") for name in images.IMAGE_DATASETS)
"""The packaged image data sets (`hf_ssl.data.images.load_image_dataset`), named with ``_`` as the suite names them."""
DATASETS = ("reuters-r8", "20newsgroups", *IMAGE_DATASETS)
TOP_KEYS = ("description", "output", "split", "datasets", "budgets", "seeds", "finetune", "arms")
ARM_KEYS = ("kind", "settings", "budgets", "seeds", "datasets")
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    # validation_size: rows carved from train for a validation split (split: validation only);
    # max_unlabeled: unlabeled pool size (negative: every row left); train_rows: pools drawn from this many
    # training rows after a shuffle by the seed (negative: all); eval_rows: evaluation rows, a fixed shuffle's first
    # (negative: all); max_length: tokens (text); image_size: pixels and backbone: a name of
    # hf_ssl.assets.backbones.IMAGE_BACKBONES (images).
    "text": {"validation_size": 1000, "max_unlabeled": 1500, "train_rows": -1, "eval_rows": -1, "max_length": 64},
    "image": {"validation_size": 1000, "max_unlabeled": 1500, "train_rows": 6000, "eval_rows": 2000,
              "image_size": 56, "backbone": "dinov2-s"},
}
FULL_LABEL_DEFAULTS = {"num_train_epochs": 2.0, "learning_rate": 5e-5, "per_device_train_batch_size": 32}
"""Settings of a ``full_label`` arm (the whole training split) under its own: a few epochs over thousands of rows."""
QUICK_DATA = {"validation_size": 200, "max_unlabeled": 200, "train_rows": 400, "eval_rows": 200, "max_length": 32,
              "image_size": 28}
"""``--quick`` caps every data setting to at most these (a negative "all" counts as larger)."""
QUICK_FINETUNE = {"max_steps": 4, "per_device_eval_batch_size": 64}
"""``--quick`` settings of every fine-tuning arm."""


class ConfigError(ValueError):
    """A suite config that cannot be run; the message names the bad key."""


@dataclass(frozen=True)
class SuiteConfig:
    """A loaded, validated config and its expansion."""

    path: str
    description: str
    output: str
    specs: tuple[RunSpec, ...]


def modality(dataset: str) -> str:
    """``image`` for Fashion-MNIST and MNIST-5k, ``text`` otherwise."""
    return "image" if dataset in IMAGE_DATASETS else "text"


def _ints(value: Any, where: str, minimum: int) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v >= minimum for v in value):
        raise ConfigError(f"{where}: expected a non-empty list of integers >= {minimum}, got {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _unknown(keys: Any, allowed: tuple[str, ...], where: str) -> None:
    bad = sorted(set(keys) - set(allowed))
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}; allowed: {', '.join(allowed)}")


def data_settings(dataset: str, given: dict[str, Any], split: str, quick: bool) -> dict[str, Any]:
    """The dataset's data settings: the defaults of its modality, then ``given``, then the ``--quick`` caps."""
    where = f"datasets.{dataset}"
    defaults = DATA_DEFAULTS[modality(dataset)]
    _unknown(given, tuple(defaults), where)
    data = {**defaults, **given}
    for key, value in data.items():
        if key == "backbone":
            if value not in IMAGE_BACKBONES:
                raise ConfigError(f"{where}.backbone: expected one of {', '.join(IMAGE_BACKBONES)}, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected an integer, got {value!r}")
    if split == "test":
        if given.get("validation_size", 0):
            raise ConfigError(f"{where}.validation_size: a test-split config draws its pools from the whole train "
                              "split; drop validation_size (or use split: validation)")
        data["validation_size"] = 0
    elif data["validation_size"] < 1:
        raise ConfigError(f"{where}.validation_size: split: validation needs validation_size >= 1 rows carved "
                          f"from train, got {data['validation_size']}")
    if quick:
        for key, cap in QUICK_DATA.items():
            if key in data and (data[key] < 0 or data[key] > cap):
                data[key] = cap
    return data


def arm_kind(name: str, arm: dict[str, Any]) -> str:
    """The arm's ``kind`` (its name when not given); raises `ConfigError` for an unknown one."""
    kind = arm.get("kind", name)
    kinds = CHEAP_KINDS + FINETUNE_KINDS + DATA_FREE_KINDS
    if kind not in kinds:
        raise ConfigError(f"arms.{name}.kind: unknown kind {kind!r} (the name is the kind when kind is not given); "
                          f"choose one of {', '.join(kinds)}")
    return kind


def data_free_specs(name: str, kind: str, arm: dict[str, Any], settings: dict[str, Any], config: dict[str, Any],
                    quick: bool) -> list[RunSpec]:
    """The runs of a data-free arm: one per seed, with its measure's full settings."""
    where = f"arms.{name}"
    for key in ("datasets", "budgets"):
        if key in arm:
            raise ConfigError(f"{where}.{key}: a {kind} arm builds its own inputs and takes no datasets or "
                              "budgets; drop the key")
    settings, error = cost_settings(settings, quick)
    if error:
        raise ConfigError(f"{where}.settings.{error}")
    seeds = _ints(arm.get("seeds", config["seeds"]), f"{where}.seeds", 0)
    return [RunSpec(dataset=NO_DATA, split=NO_DATA, labels_per_class=ALL_LABELS, arm=name, kind=kind, seed=s,
                    settings=settings, data={}) for s in (seeds[:1] if quick else seeds)]


def arm_specs(name: str, arm: dict[str, Any], config: dict[str, Any], data: dict[str, dict[str, Any]],
              quick: bool) -> list[RunSpec]:
    """The runs of one arm over its datasets, budgets and seeds."""
    where = f"arms.{name}"
    _unknown(arm, ARM_KEYS, where)
    kind = arm_kind(name, arm)
    settings = _mapping(arm.get("settings"), f"{where}.settings")
    if kind in DATA_FREE_KINDS:
        return data_free_specs(name, kind, arm, settings, config, quick)
    if kind == "full_label":
        settings = {**FULL_LABEL_DEFAULTS, **settings}
    elif kind in FINETUNE_KINDS:
        settings = {**_mapping(config.get("finetune"), "finetune"), **settings}
    if quick and kind in FINETUNE_KINDS:
        settings = {**settings, **QUICK_FINETUNE}
    datasets = arm.get("datasets", list(data))
    if not isinstance(datasets, list) or set(datasets) - set(data):
        raise ConfigError(f"{where}.datasets: expected a list among the config's datasets {list(data)}, "
                          f"got {datasets!r}")
    seeds = _ints(arm.get("seeds", config["seeds"][:1] if kind == "full_label" else config["seeds"]),
                  f"{where}.seeds", 0)
    budgets = [ALL_LABELS] if kind == "full_label" else _ints(arm.get("budgets", config["budgets"]),
                                                              f"{where}.budgets", 1)
    if quick:
        seeds, budgets = seeds[:1], budgets[:1]
    return [RunSpec(dataset=d, split=config["split"], labels_per_class=k, arm=name, kind=kind, seed=s,
                    settings=settings, data=data[d])
            for d in datasets for k in budgets for s in seeds]


def expand(config: dict[str, Any], quick: bool = False) -> list[RunSpec]:
    """Every run of a parsed config, dataset by dataset, then budget, arm and seed (data-free runs last); raises
    `ConfigError`."""
    config = _mapping(config, "config")
    _unknown(config, TOP_KEYS, "config")
    for key in ("seeds", "arms"):
        if key not in config:
            raise ConfigError(f"config: missing key {key!r}")
    arms = _mapping(config["arms"], "arms")
    if not arms:
        raise ConfigError("arms: name at least one arm")
    needs_data = [name for name, arm in arms.items() if arm_kind(name, _mapping(arm, f"arms.{name}"))
                  not in DATA_FREE_KINDS]
    for key in ("datasets", "budgets"):
        if key not in config and needs_data:
            raise ConfigError(f"config: missing key {key!r} (arm {needs_data[0]!r} needs it; only "
                              f"{'/'.join(DATA_FREE_KINDS)} arms run without datasets and budgets)")
    config.setdefault("split", "validation")
    if config["split"] not in SPLITS:
        raise ConfigError(f"split: expected one of {SPLITS}, got {config['split']!r}")
    _ints(config.get("budgets", [1]), "budgets", 1)
    _ints(config["seeds"], "seeds", 0)
    datasets = _mapping(config.get("datasets", {}), "datasets")
    if not datasets and needs_data:
        raise ConfigError("datasets: name at least one dataset")
    for dataset in datasets:
        if dataset not in DATASETS:
            raise ConfigError(f"datasets.{dataset}: unknown dataset; choose from {', '.join(DATASETS)}")
    data = {d: data_settings(d, _mapping(given, f"datasets.{d}"), config["split"], quick)
            for d, given in datasets.items()}
    specs = [s for name, arm in arms.items() for s in arm_specs(name, _mapping(arm, f"arms.{name}"), config, data,
                                                                 quick)]
    order = {d: i for i, d in enumerate(data)}  # data-free runs last, in the config's order
    return sorted(specs, key=lambda s: (order.get(s.dataset, len(order)), s.labels_per_class == ALL_LABELS,
                                        s.labels_per_class))


def load_config(path: str | Path, quick: bool = False, output: str | None = None) -> SuiteConfig:
    """Read, validate and expand a YAML config.

    Parameters:
        path (`str` or `Path`): the YAML file.
        quick (`bool`, *optional*, defaults to `False`): shrink it (`QUICK_DATA`, `QUICK_FINETUNE`, first seed and
            budget of each arm); the default output folder gets a ``-quick`` suffix so a quick run never passes
            for a full one.
        output (`str` or `None`, *optional*, defaults to `None`): output folder instead of the config's
            ``output`` (default ``bench/results/suite/<config name>``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}: not valid YAML{where} ({problem}); quote a value that holds ': ' or '#'") from None
    try:
        specs = expand(raw, quick)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    folder = output or str(raw.get("output") or f"bench/results/suite/{path.stem}") + ("-quick" if quick else "")
    return SuiteConfig(path=str(path), description=str(raw.get("description") or path.stem), output=folder,
                       specs=tuple(specs))
