"""Reading torch files that others may have written, without running their code.

``torch.load`` unpickles: a file from a shared run or model folder could call anything
(``os.system`` through ``__reduce__``) on the machine that loads it.  Every torch file
lowres reads goes through :func:`load_tensors` (``weights_only=True``: tensors, numbers,
strings and containers of them only, asked for explicitly so no environment setting turns
it off), and the checkpoints SpeechBrain recovers for lowres through :func:`safe_recovery`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    get_default_hook,
    hook_on_loading_state_dict_checkpoint,
    torch_recovery,
)

__all__ = ["UnsafeFileError", "load_tensors", "safe_recovery", "use_safe_recovery"]


class UnsafeFileError(RuntimeError):
    """A torch file holds more than tensors and plain values: refused, never unpickled."""


def load_tensors(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; UnsafeFileError naming the file otherwise."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # pickle.UnpicklingError (a global it would have to import) ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeFileError(
            f"{Path(path)}: refused: not a tensors-only torch file, and unpickling it could "
            f"run code on this machine (torch.load(weights_only=True): {first})") from err


def safe_recovery(obj, path, end_of_epoch) -> None:
    """SpeechBrain load hook: ``torch_recovery`` through :func:`load_tensors`."""
    del end_of_epoch
    state = hook_on_loading_state_dict_checkpoint(load_tensors(path))
    try:
        obj.load_state_dict(state, strict=True)
    except TypeError:  # optimisers and schedulers take no strict
        obj.load_state_dict(state)


def use_safe_recovery(checkpointer) -> None:
    """Recover every recoverable SpeechBrain would load with ``torch_recovery`` (modules,
    optimisers, schedulers, grad scalers) through :func:`safe_recovery` instead."""
    for name, obj in checkpointer.recoverables.items():
        if name not in checkpointer.custom_load_hooks and \
                get_default_hook(obj, DEFAULT_LOAD_HOOKS) is torch_recovery:
            checkpointer.custom_load_hooks[name] = safe_recovery
