"""The ``--device`` of a command, checked before any work.

torch reports a CUDA device that no GPU backs only at the first tensor moved there, deep
inside model building, as ``RuntimeError: Found no NVIDIA driver``; :func:`check_device`
refuses it at the start with one line (:class:`DeviceError`, one of
``prepare.errors.USER_ERRORS``). torch is imported only when a device is checked, so the
torch-free commands that import the error classes stay torch-free.
"""

from __future__ import annotations

__all__ = ["DeviceError", "check_device"]


class DeviceError(ValueError):
    """A ``--device`` this machine cannot run on; the message names it."""


def check_device(device) -> None:
    """Raise :class:`DeviceError` if ``device`` (a name such as ``cuda:1``, a
    ``torch.device`` or None: the command's default) is not a device type torch knows, or
    names a CUDA device that is not visible."""
    if device is None:
        return
    import torch

    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"--device {device}: not a device ({err})") from None
    if chosen.type != "cuda":
        return
    visible = torch.cuda.device_count()
    if visible == 0:
        raise DeviceError(f"--device {device}: no CUDA device is visible (no GPU, no NVIDIA "
                          "driver, or CUDA_VISIBLE_DEVICES empty): use --device cpu")
    if chosen.index is not None and chosen.index >= visible:
        raise DeviceError(f"--device {device}: only {visible} CUDA device(s) are visible "
                          f"(cuda:0 to cuda:{visible - 1})")
