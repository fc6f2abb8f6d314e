"""Every `TrainingArguments` default that an hf_ssl config changes is listed, with the original default, in the
``Parameters:`` block of the config class that changes it and in the table of docs/self_training.md; nothing is
listed there that is not changed."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from transformers import TrainingArguments

import hf_ssl  # noqa: F401  (imports every config)
from hf_ssl.trainer.base_config import SSLConfig

ROOT = Path(__file__).resolve().parents[1]
ENTRY = re.compile(r"^ {8}(\w+) \([^\n]*defaults to `([^`]*)`\):\n {12}`TrainingArguments` default: `([^`]*)`\.",
                   re.M)
ROW = re.compile(r"^\| `(\w+)` \| `([^`]*)` \| `([^`]*)` \| [^|\n]+ \|$", re.M)


def _configs(cls: type = SSLConfig) -> list[type]:
    return [cls] + [c for sub in cls.__subclasses__() for c in _configs(sub)]


CONFIGS = sorted(set(_configs()), key=lambda c: c.__name__)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _changed(config: type) -> dict[str, tuple[object, object]]:
    """Field -> (TrainingArguments default, the config's default), for the defaults the config changes."""
    base = {f.name: _default(f) for f in dataclasses.fields(TrainingArguments)}
    return {f.name: (base[f.name], _default(f)) for f in dataclasses.fields(config)
            if f.name in base and _default(f) != base[f.name]}


def _owner(config: type, name: str) -> type:
    """The class of ``config``'s MRO whose body sets the default of ``name``."""
    return next(c for c in config.__mro__ if name in vars(c).get("__annotations__", {}))


def _listed(text: str, pattern: re.Pattern) -> dict[str, tuple[object, object]]:
    return {name: (ast.literal_eval(original), ast.literal_eval(own))
            for name, own, original in ((m[0], m[1], m[2]) for m in pattern.findall(text))}


def test_every_config_is_checked():
    assert {"SSLConfig", "SelfTrainingConfig", "ConsistencyConfig", "LabelPropagationConfig"} <= {
        c.__name__ for c in CONFIGS}
    assert _changed(SSLConfig), "SSLConfig changes no TrainingArguments default: drop this test's docs table check"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_changed_defaults_are_in_the_docstring(config):
    for name, (original, own) in _changed(config).items():
        owner = _owner(config, name)
        listed = _listed(owner.__doc__ or "", ENTRY)
        assert name in listed, (
            f"{owner.__name__} changes TrainingArguments' default of {name} ({original!r} -> {own!r}) without "
            f"listing it in its Parameters block as `{name} (`type`, *optional*, defaults to `{own!r}`):` followed "
            f"by the line `TrainingArguments` default: `{original!r}`. and the reason")
        assert listed[name] == (original, own), f"{owner.__name__}'s docstring gives {name} {listed[name]}"
    for name in _listed(config.__doc__ or "", ENTRY):
        assert name in _changed(config), f"{config.__name__}'s docstring lists {name} as a changed default; it is not"


def test_changed_defaults_are_in_the_docs_table():
    text = (ROOT / "docs" / "self_training.md").read_text()
    section = text.split("## Defaults that differ from `TrainingArguments`")[1].split("\n## ")[0]
    rows = {name: (ast.literal_eval(original), ast.literal_eval(own)) for name, original, own in ROW.findall(section)}
    changed = {name: values for config in CONFIGS for name, values in _changed(config).items()}
    assert rows == changed, "docs/self_training.md's table of changed TrainingArguments defaults is out of date"
