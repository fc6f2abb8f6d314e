"""Argument parsing for recipes: `HfArgumentParser` plus ``--config file.yaml``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import yaml
from transformers import HfArgumentParser

__all__ = ["parse_args"]


def parse_args(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parse dataclasses from the command line; ``--config x.yaml`` supplies defaults that flags override.

    Args:
        dataclass_types: dataclasses to fill (e.g. script arguments and an `SSLConfig`).
        args: argument list (default: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if args is None else args)
    parser = HfArgumentParser(dataclass_types)
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise SystemExit("--config needs a YAML file path")
        with open(args[at + 1], encoding="utf-8") as handle:
            defaults = yaml.safe_load(handle) or {}
        if not isinstance(defaults, dict):
            raise SystemExit(f"{args[at + 1]} must hold a mapping of argument names to values")
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(defaults) - known)
        if unknown:
            raise SystemExit(f"Unknown keys in {args[at + 1]}: {unknown}")
        parser.set_defaults(**defaults)
        del args[at:at + 2]
    return parser.parse_args_into_dataclasses(args=args)
