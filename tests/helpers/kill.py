"""Stopping a run at a chosen point, as a crash or a SIGKILL would.

`KillAt` raises out of the training loop at a callback event (the files written so far stay, as after a kill).
`run_killed` runs a function in a forked child that dies with ``os._exit`` (no ``finally``, no cleanup, like a
SIGKILL) at its n-th file write or rename: the file being written is left half written, the rename not done.
"""

from __future__ import annotations

import builtins
import io
import itertools
import os
import traceback
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

KILLED = 17  # exit code of a child that died at its kill point


class Killed(Exception):
    """Raised by `KillAt` where the process would have died."""


class KillAt(TrainerCallback):
    """Raises `Killed` at the ``nth`` call (from 1) of the callback event ``event`` (``"on_save"``,
    ``"on_train_begin"``, ``"on_train_end"``, ``"on_epoch_begin"`` or the self-training round hook
    ``"on_round_begin"``)."""

    def __init__(self, event: str, nth: int) -> None:
        self.event, self.nth, self.seen = event, nth, 0

    def _hit(self, event: str) -> None:
        if event == self.event:
            self.seen += 1
            if self.seen == self.nth:
                raise Killed(f"{event} #{self.nth}")

    def on_save(self, args, state, control, **kwargs):
        self._hit("on_save")

    def on_train_begin(self, args, state, control, **kwargs):
        self._hit("on_train_begin")

    def on_train_end(self, args, state, control, **kwargs):
        self._hit("on_train_end")

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._hit("on_epoch_begin")

    def on_round_begin(self, args, state, control, round, **kwargs):
        self._hit("on_round_begin")


class _DiesWhileWriting:
    """A file handle that writes half of the first write (or nothing) and then kills the process."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def write(self, data: Any) -> None:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        os._exit(KILLED)

    def close(self) -> None:
        self._handle.flush()
        os._exit(KILLED)

    def __enter__(self) -> _DiesWhileWriting:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def _install_kill(nth: int, match: Callable[[str, str], bool]) -> None:
    """Make the ``nth`` write event whose (kind, path) ``match`` accepts kill the process: kinds are ``"open"`` (a
    file opened for writing: left half written), ``"safetensors"`` (written, then truncated to half) and the
    ``os`` functions ``"replace"``, ``"rename"``, ``"remove"``, ``"unlink"``, ``"rmdir"`` (not done)."""
    counter = itertools.count(1)

    def hit(kind: str, path: Any) -> bool:
        return isinstance(path, (str, os.PathLike)) and match(kind, os.fspath(path)) and next(counter) == nth

    def dies_before(kind: str) -> Callable[..., Any]:
        real = getattr(os, kind)

        def call(path, *args, **kwargs):
            if hit(kind, path):
                os._exit(KILLED)
            return real(path, *args, **kwargs)

        return call

    for kind in ("replace", "rename", "remove", "unlink", "rmdir"):
        setattr(os, kind, dies_before(kind))
    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return _DiesWhileWriting(handle) if any(c in mode for c in "wax") and hit("open", file) else handle

    builtins.open = io.open = open_
    import transformers.modeling_utils as modeling_utils

    real_save = modeling_utils.safe_save_file

    def save_file(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        if hit("safetensors", filename):
            os.truncate(filename, os.path.getsize(filename) // 2)
            os._exit(KILLED)

    modeling_utils.safe_save_file = save_file


def run_killed(fn: Callable[[], Any], nth: int, match: Callable[[str, str], bool] = lambda kind, path: True) -> bool:
    """Run ``fn()`` in a forked child killed at its ``nth`` matching write event (see `_install_kill`); True if it
    died there, False if ``fn`` finished first."""
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 2
        try:
            _install_kill(nth, match)
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, KILLED), f"the child failed (exit code {code}) before its kill point"
    return code == KILLED
