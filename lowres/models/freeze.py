"""The wav2vec2 freeze schedule (STUDY.md §2): only the classifier trains at first.

With ``wav2vec_initially_frozen`` the backbone is frozen for optimiser steps
0 .. ``num_frozen_steps`` - 1 and trains from step ``num_frozen_steps`` on;
``num_frozen_steps=None`` keeps it frozen for the whole run.
"""

from __future__ import annotations

import torch


def backbone_frozen_at(step: int, initially_frozen: bool, num_frozen_steps: int | None) -> bool:
    """Whether the backbone is frozen at optimiser step ``step`` (0-based)."""
    if num_frozen_steps is not None and (
        isinstance(num_frozen_steps, bool) or int(num_frozen_steps) != num_frozen_steps
        or num_frozen_steps < 0
    ):
        raise ValueError(
            f"num_frozen_steps must be a non-negative integer or None, got {num_frozen_steps!r}"
        )
    if not initially_frozen:
        return False
    return num_frozen_steps is None or step < num_frozen_steps


def apply_freeze_schedule(
    embedder: torch.nn.Module, step: int, initially_frozen: bool, num_frozen_steps: int | None
) -> bool:
    """Freeze / unfreeze ``embedder``'s backbone for ``step`` (no-op for embedders without one).

    Returns whether the backbone is frozen at ``step``.
    """
    frozen = backbone_frozen_at(step, initially_frozen, num_frozen_steps)
    setter = getattr(embedder, "set_backbone_frozen", None)
    if setter is not None and getattr(embedder, "backbone_frozen", None) != frozen:
        setter(frozen)
    return frozen
