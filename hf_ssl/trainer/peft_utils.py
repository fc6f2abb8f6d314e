"""PEFT (LoRA, ...) support shared by every hf_ssl trainer."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["HEAD_NAMES", "head_module_names", "wrap_with_peft"]

HEAD_NAMES = ("classifier", "score", "head")


def head_module_names(model: nn.Module) -> list[str]:
    """Names of the classification head modules of a transformers model (``classifier``, ``score``, ...)."""
    return [name for name in HEAD_NAMES if isinstance(getattr(model, name, None), nn.Module)]


def wrap_with_peft(model: nn.Module, peft_config: Any) -> nn.Module:
    """Wrap ``model`` with `peft.get_peft_model`, keeping the classification head fully trainable.

    Parameters:
        model (`nn.Module`): a transformers classification model.
        peft_config (`peft.PeftConfig`): e.g. a `LoraConfig`; it is copied, not modified.

    Raises:
        TypeError: if ``peft_config`` is not a `peft.PeftConfig`.
        ValueError: if ``target_modules`` names modules the model does not have.
    """
    from peft import PeftConfig, get_peft_model

    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"peft_config must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}.")
    config = copy.deepcopy(peft_config)
    targets = getattr(config, "target_modules", None)
    if isinstance(targets, (list, set, tuple)):
        names = [name for name, _ in model.named_modules()]
        missing = sorted(t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names))
        if missing:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(
                f"peft_config.target_modules {missing} match no module of {type(model).__name__}. "
                f"Linear modules it has: {linear}. Set target_modules to some of those (e.g. --lora_target_modules)."
            )
    heads = head_module_names(model)
    if hasattr(config, "modules_to_save"):
        config.modules_to_save = list(dict.fromkeys([*(config.modules_to_save or []), *heads]))
    return get_peft_model(model, config)
