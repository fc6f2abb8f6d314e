"""Small helpers every layer may use: numpy conversion and checks, BLAS threads, optional faiss, and writes that
appear whole or not at all (files, folders, and the temporary files a killed run leaves behind)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import torch

__all__ = ["TEMP_PREFIX", "as_numpy", "as_real_matrix", "import_faiss", "move_files", "remove_path",
           "remove_temp_files", "single_threaded_blas", "staged_folder", "temp_path", "write_file_atomic",
           "write_text_atomic"]

TEMP_PREFIX = ".hf_ssl-tmp-"
OLD_PREFIX = ".hf_ssl-old-"
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{8}-(?P<name>.+)")


def import_faiss() -> Any:
    """The faiss module, or None when it cannot be imported."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread (threadpoolctl, when installed): small vector operations in iterative solvers and
    k-means gain nothing from threads, and on a busy machine waking BLAS threads costs more than the work."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def as_numpy(a: Any) -> np.ndarray:
    """A numpy view of a numpy array, array-like or torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if a.dtype == torch.bfloat16:  # numpy has no bfloat16
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


def as_real_matrix(a: Any, name: str) -> np.ndarray:
    """``a`` as a numpy (n, d) array of finite real numbers with n, d >= 1, or a ValueError naming ``name``.

    Parameters:
        a (`np.ndarray`, `torch.Tensor` or array-like):
            The matrix to check.
        name (`str`):
            The argument's name, for the error message.
    """
    a = as_numpy(a)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D (n, d) array with n >= 1 and d >= 1, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def temp_path(path: str) -> str:
    """A fresh temporary path beside ``path`` (same folder, so a rename moves it into place), named
    ``.hf_ssl-tmp-<random>-<name>`` so that `remove_temp_files` recognises it once its writer is gone."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}")


def remove_path(path: str) -> None:
    """Delete a file or a folder tree."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def write_file_atomic(path: str, write: Callable[[IO[bytes]], Any]) -> str:
    """Write ``path`` through ``write(handle)`` on a temporary file renamed over it: ``path`` holds the previous
    version or the new one, whole, whenever the process stops. Returns ``path``.

    Parameters:
        path (`str`): the file to write.
        write (`Callable[[IO[bytes]], Any]`): writes the content to the binary handle it is given.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(folder: str, name: str, text: str) -> str:
    """Write ``text`` (UTF-8) to ``folder/name`` with `write_file_atomic`; return the path."""
    return write_file_atomic(os.path.join(folder, name), lambda handle: handle.write(text.encode("utf-8")))


def remove_temp_files(folder: str, name: str | None = None, descend: str | None = None) -> list[str]:
    """Delete the temporary files and folders of `temp_path` left in ``folder`` by a process that was killed.

    Parameters:
        folder (`str`): where to look.
        name (`str` or `None`, defaults to `None`): only the temporary entries of this file or folder name.
        descend (`str` or `None`, defaults to `None`): also clean the subfolders whose names start with this prefix,
            recursively (e.g. ``"checkpoint-"``).

    Returns:
        The deleted paths.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        match = _TEMP_NAME.fullmatch(entry)
        if match and (name is None or match["name"] == name):
            remove_path(path)
            removed.append(path)
        elif descend and entry.startswith(descend) and os.path.isdir(path) and not os.path.islink(path):
            removed += remove_temp_files(path, name, descend)
    return removed


def _aside_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f"{OLD_PREFIX}{name}")


def _recover_folder(path: str) -> None:
    """Finish or undo a `staged_folder` replacement of ``path`` that a killed process left half done."""
    aside = _aside_path(path)
    if os.path.lexists(aside):
        if os.path.lexists(path):  # the new version is in; the old one was not deleted yet
            remove_path(aside)
        else:  # killed between the two renames: the previous version comes back
            os.replace(aside, path)
    remove_temp_files(os.path.dirname(path), name=os.path.basename(path))


@contextlib.contextmanager
def staged_folder(path: str) -> Iterator[str]:
    """A temporary folder beside ``path`` to write a new version of the folder ``path`` into.

    When the block ends without an error, the current ``path`` is renamed aside, the new folder renamed in, and the
    old one deleted; on an error the new folder is deleted and ``path`` is untouched. A replacement that a killed
    process left half done (or its temporary folder) is finished, or undone, by the next `staged_folder` of ``path``.

    Parameters:
        path (`str`): the folder to replace (or create).
    """
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _recover_folder(path)
    tmp = temp_path(path)
    os.mkdir(tmp)
    try:
        yield tmp
        aside = _aside_path(path)
        replacing = os.path.lexists(path)
        if replacing:
            os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except BaseException:
            if replacing:
                os.replace(aside, path)
            raise
        if replacing:
            remove_path(aside)
    finally:
        if os.path.lexists(tmp):
            remove_path(tmp)


def move_files(source: str, target: str) -> list[str]:
    """Move every file under the folder ``source`` to the same relative path under ``target`` with one rename each
    (each file of ``target`` is the old version or the new one, whole); return the relative paths moved."""
    moved = []
    for root, _, files in os.walk(source):
        relative = os.path.relpath(root, source)
        os.makedirs(os.path.join(target, relative), exist_ok=True)
        for file in sorted(files):
            name = os.path.normpath(os.path.join(relative, file))
            os.replace(os.path.join(source, name), os.path.join(target, name))
            moved.append(name)
    return moved
