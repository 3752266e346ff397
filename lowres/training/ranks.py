"""What the processes of a DDP run agree on beyond SpeechBrain's own collectives.

- :func:`run_on_main_waiting`: work only the main process does (manifests, wav statistics,
  the label encoder, pre-training's audio lists) while the others wait. SpeechBrain's
  ``run_on_main`` waits in a barrier of the default group, which NCCL's watchdog ends after
  the group's timeout (SpeechBrain sets 2 h), shorter than preparing VoxCeleb2 can take.
  Here the others wait in a gloo barrier of a group of their own, whose timeout is the
  yaml's ``rank_wait_hours``; gloo runs on the CPU, so no NCCL watchdog watches it.
- :func:`leave_after_training`: every process leaves the process group once training is
  over, so the main process tests the run with no collective pending (the evaluation of
  O/E/H, best and last, can outlast any timeout); the others then end.
- :func:`reseed_rank`: rank R > 0 draws its model-side randomness (dropout, SpecAugment,
  time masks, pooling noise) from ``seed + R``, so the ranks do not mask the rows of their
  shares alike; rank 0 keeps the one-process run's stream.
- :func:`all_ranks_finite`: whether the loss is finite on every rank, so that all ranks
  count a non-finite step alike and stop at the same step.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.seed import seed_everything

logger = logging.getLogger(__name__)

_wait_group = None  # the gloo group of run_on_main_waiting, made on first use


def rank() -> int:
    """This process's global rank (torchrun's ``RANK``; 0 without DDP)."""
    return int(os.environ.get("RANK", 0))


def _in_group() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _wait_for_all(wait_hours: float) -> None:
    """A barrier of every process in the gloo group of the waits (made on first use, by
    all processes at once), which times out after ``wait_hours``."""
    global _wait_group
    if _wait_group is None:
        _wait_group = dist.new_group(backend="gloo",
                                     timeout=datetime.timedelta(hours=wait_hours))
    dist.barrier(group=_wait_group)


def run_on_main_waiting(func: Callable, args: tuple = (), wait_hours: float = 48.0):
    """``func(*args)`` on the main process while the others wait up to ``wait_hours`` for
    it; what ``func`` returned on the main process, None on the others."""
    result = func(*args) if if_main_process() else None
    if _in_group():
        _wait_for_all(wait_hours)
    return result


def leave_after_training(wait_hours: float = 48.0) -> bool:
    """Every process leaves the process group once all of them got here (call it on all);
    True on the main process, which then works on alone.

    Decide by the returned value, not by SpeechBrain's ``if_main_process``: without a
    process group that holds on every process."""
    global _wait_group
    if _in_group():
        _wait_for_all(wait_hours)
        dist.destroy_process_group()
        _wait_group = None
        if rank() > 0:
            logger.info("rank %d: training is over; the main process tests the run", rank())
    return rank() == 0


def reseed_rank(seed: int) -> None:
    """Seed python, numpy and torch with ``seed + rank`` on ranks above 0 (see above)."""
    if rank() > 0:
        seed_everything(seed + rank())


def all_ranks_finite(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite on every process (an all-reduce of one flag under DDP)."""
    finite = bool(torch.isfinite(loss).all())
    if not _in_group():
        return finite
    flag = torch.tensor([float(finite)], device=loss.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
