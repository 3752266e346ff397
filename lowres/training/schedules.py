"""Learning-rate schedules of the study (docs/study.md, 'Training recipe'), stepped once
per optimiser step.

- ``cyclic``: triangular2 from ``base_lr`` (1e-8) up to ``lr`` and back, half-cycle
  ``max_steps / 8``, so a run holds 4 cycles whose peaks halve (lr, lr/2, lr/4, lr/8 above base_lr).
  This is torch's ``CyclicLR(mode="triangular2", cycle_momentum=False)``, which also equals
  SpeechBrain's ``CyclicLRScheduler`` for this setting.
- ``one_cycle``: the same triangular2 shape with a fixed half-cycle (25k steps by default),
  i.e. one up-and-down cycle in a 50k-step run.
- ``constant``: ``lr`` throughout.
- ``exp_decay``: ``lr * (final_lr / lr) ** (step / max_steps)``: from ``lr`` at step 0 to
  ``final_lr`` (5e-6) at ``max_steps``, held there afterwards.

With parameter groups (``lr_scales``: the SSL backbone's ``ssl_adaptation_lr``) every group
follows the same shape, scaled: their learning rates keep one ratio throughout.

Every scheduler returned is a ``torch.optim.lr_scheduler.LRScheduler``; SpeechBrain's
``Checkpointer`` saves and restores those with its default hooks (``CyclicLR`` has its own
registered workaround hooks), so a scheduler can be added to the recoverables as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SCHEDULES = ("cyclic", "constant", "exp_decay", "one_cycle")
#: The hparams each schedule reads besides ``lr`` and ``max_steps`` (the others do not apply).
SCHEDULE_KEYS = {"cyclic": ("base_lr",), "constant": (), "exp_decay": ("final_lr",),
                 "one_cycle": ("base_lr", "one_cycle_half_steps")}


class ConstantFactor:
    """LambdaLR factor 1.0 for every step (a class so its state is checkpointable)."""

    def __call__(self, step: int) -> float:
        return 1.0


class ExpDecayFactor:
    """LambdaLR factor of ``exp_decay``: ``(final_lr / lr) ** (min(step, max_steps) / max_steps)``.

    A class, not a closure, so LambdaLR's state_dict (and a checkpoint) records its values.
    """

    def __init__(self, lr: float, final_lr: float, max_steps: int):
        self.log_ratio = math.log(final_lr / lr)
        self.max_steps = int(max_steps)

    def __call__(self, step: int) -> float:
        return math.exp(self.log_ratio * min(step, self.max_steps) / self.max_steps)


def cyclic_half_cycle(max_steps: int) -> int:
    """Half-cycle length of the ``cyclic`` schedule: ``max_steps / 8`` (4 full cycles)."""
    return max(1, round(max_steps / 8))


def _check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    lr: float,
    max_steps: int,
    base_lr: float = 1e-8,
    final_lr: float = 5e-6,
    one_cycle_half_steps: int = 25000,
    lr_scales: Sequence[float] | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Build the schedule ``name`` for ``optimizer``; call ``.step()`` once per optimiser step.

    The optimiser's learning rate is overwritten: after construction it holds the
    schedule's value at step 0 (``base_lr`` for the cyclic ones, ``lr`` otherwise).
    ``lr_scales``: one factor per parameter group (default 1 for each); group ``i`` follows
    the schedule of ``lr * lr_scales[i]`` (and ``base_lr * lr_scales[i]``), so at every step
    the groups' learning rates keep the ratios of their factors.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones), a non-positive
            ``lr`` / ``max_steps`` / ``base_lr`` / ``final_lr`` / ``one_cycle_half_steps`` /
            ``lr_scales`` entry, ``lr_scales`` not one per parameter group, ``base_lr >= lr``
            for a cyclic schedule, or ``final_lr >= lr`` for ``exp_decay``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"lr_schedule {name!r} is unknown; valid: {', '.join(SCHEDULES)}")
    _check_positive("lr", lr)
    _check_positive("max_steps", max_steps)
    lr, max_steps = float(lr), int(max_steps)
    scales = [1.0] * len(optimizer.param_groups) if lr_scales is None else list(lr_scales)
    if len(scales) != len(optimizer.param_groups):
        raise ValueError(f"{len(scales)} lr_scales for {len(optimizer.param_groups)} "
                         "parameter groups")
    for scale in scales:
        _check_positive("lr_scales", scale)

    if name in ("cyclic", "one_cycle"):
        _check_positive("base_lr", base_lr)
        if base_lr >= lr:
            raise ValueError(f"lr_schedule {name!r} needs base_lr ({base_lr}) < lr ({lr})")
        if name == "cyclic":
            half = cyclic_half_cycle(max_steps)
        else:
            _check_positive("one_cycle_half_steps", one_cycle_half_steps)
            half = int(one_cycle_half_steps)
        return torch.optim.lr_scheduler.CyclicLR(
            optimizer,
            base_lr=[float(base_lr) * scale for scale in scales],
            max_lr=[lr * scale for scale in scales],
            step_size_up=half,
            mode="triangular2",
            cycle_momentum=False,
        )

    for group, scale in zip(optimizer.param_groups, scales, strict=True):
        group["lr"] = lr * scale
        group.pop("initial_lr", None)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, ConstantFactor())
    _check_positive("final_lr", final_lr)
    if final_lr >= lr:
        raise ValueError(
            f"lr_schedule 'exp_decay' decays from lr to final_lr; needs final_lr ({final_lr}) "
            f"< lr ({lr})"
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, ExpDecayFactor(lr, float(final_lr), max_steps)
    )
