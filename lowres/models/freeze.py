"""The wav2vec2 freeze schedule (docs/study.md, 'Models' and 'wav2vec2 in the published
runs'): only the classifier trains at first.

With ``wav2vec_initially_frozen`` the backbone is frozen for optimiser steps
0 .. ``num_frozen_steps`` - 1 and trains from step ``num_frozen_steps`` on;
``num_frozen_steps=None`` keeps it frozen for the whole run. A frozen backbone gets no
gradient and accumulates none.

Its mode while frozen (``frozen_backbone_as_published`` in hparams/shared/wav2vec2.yaml):

- as published (default, a bug of the original): eval mode until the first validation
  after training started, train mode (dropout, layerdrop, SpecAugment on, still no
  gradient) from then on until ``num_frozen_steps``. The original froze the backbone with
  Lightning's ``freeze()`` (eval mode) in ``on_train_start``, but Lightning 1.5 puts the
  whole model back into train mode at the end of every validation
  (``EvaluationLoop.on_run_end`` -> ``on_validation_model_train``). Its sanity-check
  validation does not count: ``Trainer._run_train`` runs it before the fit loop calls
  ``on_train_start``, whose ``freeze()`` then sets eval mode again. So the frozen backbone
  ran in train mode from step ~494 (tiny sets, one validation per epoch) or 3,125 (full)
  to 12,500. In recipes/VoxCeleb/train.py that is from the second validation interval
  (``epoch_counter.current > 1``) on; its step-0 validation is the sanity check's.
- otherwise (the described behaviour): eval mode throughout the frozen steps.

With ``ssl_adaptation`` lora or adapter the schedule freezes the whole backbone, the added
weights included; with frozen it never unfreezes (lowres.models.ssl_adaptation).
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
    embedder: torch.nn.Module, step: int, initially_frozen: bool, num_frozen_steps: int | None,
    train_mode: bool = False,
) -> bool:
    """Freeze / unfreeze ``embedder``'s backbone for ``step`` (no-op for embedders without one).

    ``train_mode``: a frozen backbone follows the embedder's train/eval mode instead of
    staying in eval mode (the published runs after their first validation, see above).
    A backbone that never trains (``backbone_trains`` False: ``ssl_adaptation: frozen``)
    stays frozen in eval mode whatever the schedule. Returns whether the backbone is frozen
    at ``step``.
    """
    trains = getattr(embedder, "backbone_trains", True)
    frozen = backbone_frozen_at(step, initially_frozen, num_frozen_steps) or not trains
    train_mode = bool(train_mode) and trains
    setter = getattr(embedder, "set_backbone_frozen", None)
    state = (getattr(embedder, "backbone_frozen", None),
             getattr(embedder, "frozen_train_mode", None))
    if setter is not None and state != (frozen, bool(train_mode)):
        setter(frozen, train_mode)
    return frozen
