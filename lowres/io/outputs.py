"""Where a command writes: checked before its work, not when it saves the result.

A run folder, an embeddings file or an exported model that cannot be written (a file
stands where a folder must be, or the folder is read-only) would otherwise fail after the
training or the embedding it was to hold, with a traceback; :func:`check_output_folder` and
:func:`check_output_file` refuse it at the start with one line that names the option and
the path (:class:`OutputPathError`, one of ``prepare.errors.USER_ERRORS``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OutputPathError", "check_output_file", "check_output_folder"]


class OutputPathError(ValueError):
    """An output path that cannot be written; the message names the option and the path."""


def _why_not_a_folder(folder: Path) -> str | None:
    """Why ``folder`` cannot be (made) a writable folder, or None if it can."""
    for path in (folder, *folder.parents):
        if path.is_dir():
            return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
        if path.exists() or path.is_symlink():
            return f"{path} is a file, not a folder"
    return None


def check_output_folder(folder: str | os.PathLike, option: str) -> None:
    """Raise :class:`OutputPathError` unless ``folder`` is, or can be made, a writable
    folder (no file stands at it or at a parent)."""
    why = _why_not_a_folder(Path(folder))
    if why:
        raise OutputPathError(f"{option} {folder}: {why}")


def check_output_file(path: str | os.PathLike, option: str) -> None:
    """Raise :class:`OutputPathError` unless the file ``path`` can be written: it is no
    folder and its parent is, or can be made, a writable folder."""
    path = Path(path)
    why = f"{path} is a folder" if path.is_dir() else _why_not_a_folder(path.parent)
    if why:
        raise OutputPathError(f"{option} {path}: {why}")
