"""Run a recipe as ``__main__`` while recording which files this process writes under a folder.

    python tests/helpers/mp_audit_run.py <watched_dir> <log_dir> recipes/x.py [recipe args...]

Every file opened for writing, and every rename into place, under ``watched_dir`` is appended (one path a line) to
``log_dir/writes-rank<RANK>.txt`` when the process exits, so a test can check that only the main process wrote the
recipe's outputs. Uses `sys.addaudithook` (the ``open`` and ``os.rename`` events), so it sees writes made from
Python, not those made inside native libraries (e.g. the safetensors weights file; its ``config.json`` beside it is
written from Python by the same ``save_pretrained`` call).
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _is_write(mode: Any, flags: Any) -> bool:
    """Whether an ``open`` audit event opens for writing."""
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def main() -> None:
    watched, log_dir, recipe, *recipe_args = sys.argv[1:]
    watched = os.path.abspath(watched) + os.sep
    writes: list[str] = []

    def under_watch(path: Any) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None  # a file descriptor
        full = os.path.abspath(os.fspath(path))
        return full[len(watched):] if full.startswith(watched) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open" and _is_write(args[1], args[2]):
            relative = under_watch(args[0])
        elif event == "os.rename":
            relative = under_watch(args[1])
        else:
            return
        if relative is not None:
            writes.append(relative)

    def dump() -> None:
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, f"writes-rank{os.environ.get('RANK', '0')}.txt"), "w") as handle:
            handle.write("".join(f"{path}\n" for path in writes))

    atexit.register(dump)
    sys.addaudithook(hook)
    sys.argv = [recipe, *recipe_args]
    sys.path[0] = os.path.dirname(os.path.abspath(recipe))  # as `python recipe.py` would have it
    runpy.run_path(recipe, run_name="__main__")


if __name__ == "__main__":
    main()
