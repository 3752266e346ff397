"""A run's hparams and the embedder weights to test: its best or last checkpoint, or the
mean of several (``average_checkpoints``; beyond the study).

The evaluation, eval.py, the SpeakerVerifier and the export load a run through these, so
they rebuild it the same way; only the embedder is loaded, with ``weights_only`` (a
shared run folder cannot run code here: :mod:`lowres.io.tensor_files`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from speechbrain.utils.checkpoints import (
    Checkpoint,
    Checkpointer,
    average_checkpoints,
    average_state_dicts,
)

from lowres.io.run_folder import hyperparams_path, save_folder
from lowres.io.tensor_files import load_tensors, safe_recovery

logger = logging.getLogger(__name__)

__all__ = ["AVERAGE_BY", "CHECKPOINTS", "EvaluationError", "average_weights",
           "checkpoints_to_average", "load_averaged", "load_checkpoint", "load_run_hparams"]

CHECKPOINTS = ("best", "last", "averaged")
AVERAGE_BY = ("last", "best")


class EvaluationError(RuntimeError):
    """Something the evaluation needs is missing; the message names it."""


def load_run_hparams(output_folder: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Rebuild a run's hparams from its resolved ``<output_folder>/hyperparams.yaml``.

    ``overrides`` (top-level keys) apply on top.  The run folder may have moved since
    training, or be named relative to another directory than training's: ``output_folder``
    and every path below the one stored are taken from the folder given
    (:func:`lowres.io.hparams.load_moved_hparams`), so nothing is created where the run was;
    the checkpointer is pointed at the run folder's ``save`` if it names another place.  A
    folder without ``save`` is refused before anything is built.
    """
    from lowres.io.hparams import load_moved_hparams

    out = Path(output_folder)
    run_yaml = hyperparams_path(out)
    if not run_yaml.is_file():
        raise EvaluationError(f"{run_yaml} not found: is {out} a run folder written by train.py?")
    if not save_folder(out).is_dir():
        raise EvaluationError(f"{save_folder(out)} not found: {out} has no checkpoints "
                              "(train the run first)")
    hparams = load_moved_hparams(run_yaml, "output_folder", out,
                                 {**(overrides or {}), "output_folder": str(out)})
    if Path(hparams["checkpointer"].checkpoints_dir).resolve() != save_folder(out).resolve():
        hparams["checkpointer"] = Checkpointer(save_folder(out), {})
    return hparams


def load_checkpoint(hparams: dict, checkpoint: str = "best") -> Checkpoint:
    """Load the embedder weights of the ``best`` (min val_eer) or ``last`` checkpoint.

    Only the embedder is loaded (the classifier is not needed to evaluate and
    its size depends on the training speakers).  Returns the SpeechBrain
    ``Checkpoint`` (``.path``, ``.meta``).
    """
    if checkpoint not in CHECKPOINTS[:2]:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS[:2]}, got {checkpoint!r}")
    checkpointer: Checkpointer = hparams["checkpointer"]
    if checkpoint == "best":
        ckpt = checkpointer.find_checkpoint(min_key="val_eer")
    else:
        ckpt = checkpointer.find_checkpoint()
    if ckpt is None:
        what = "with a val_eer in its meta" if checkpoint == "best" else "at all"
        raise EvaluationError(
            f"no checkpoint {what} in {checkpointer.checkpoints_dir} (train the run first)")
    if "embedder" not in ckpt.paramfiles:
        raise EvaluationError(f"checkpoint {ckpt.path} has no 'embedder' parameters")
    # weights_only=True: a shared run folder cannot run code here (lowres.io.tensor_files)
    Checkpointer(ckpt.path.parent, {"embedder": hparams["embedder"]},
                 custom_load_hooks={"embedder": safe_recovery}).load_checkpoint(ckpt)
    logger.info("loaded %s checkpoint %s (meta %s)", checkpoint, ckpt.path.name, ckpt.meta)
    return ckpt


def checkpoints_to_average(checkpointer: Checkpointer, n: int, by: str) -> list[Checkpoint]:
    """The ``n`` latest checkpoints of training (``by="last"``) or the ``n`` of lowest
    val_eer (``"best"``), oldest first; intra-epoch (timed) checkpoints have no step and
    are not candidates."""
    if by not in AVERAGE_BY:
        raise ValueError(f"by must be one of {AVERAGE_BY}, got {by!r}")
    ckpts = checkpointer.find_checkpoints(
        min_key="val_eer" if by == "best" else None, max_num_checkpoints=n,
        ckpt_predicate=lambda c: "step" in c.meta and "embedder" in c.paramfiles)
    return sorted(ckpts, key=lambda c: c.meta["step"])


def average_weights(state_dicts) -> dict:
    """SpeechBrain's mean of state dicts over the floating-point tensors; the others
    (counters such as num_batches_tracked, whose mean would be a float) are the last
    state dict's."""
    last: dict = {}

    def floats():
        for state in state_dicts:
            last.clear()
            last.update({k: v for k, v in state.items() if not v.is_floating_point()})
            yield {k: v for k, v in state.items() if v.is_floating_point()}

    return {**average_state_dicts(floats()), **last}


def load_averaged(hparams: dict) -> list[Checkpoint]:
    """Load the mean embedder weights of the checkpoints ``average_checkpoints`` and
    ``average_checkpoints_by`` name (:func:`checkpoints_to_average`); returns them."""
    n = int(hparams.get("average_checkpoints", 0))
    by = hparams.get("average_checkpoints_by", "last")
    if n < 1:
        raise EvaluationError("checkpoint 'averaged' needs average_checkpoints >= 1")
    ckpts = checkpoints_to_average(hparams["checkpointer"], n, by)
    if not ckpts:
        raise EvaluationError(f"no checkpoint to average ({by}) in "
                              f"{hparams['checkpointer'].checkpoints_dir} (train the run first)")
    if len(ckpts) < n:
        logger.warning("averaging %d checkpoints, not average_checkpoints=%d: the run kept "
                       "no more", len(ckpts), n)
    # the project's loader: onto the CPU whatever device saved them, and a file whose
    # unpickling could run code refused with its name
    state = average_checkpoints(ckpts, "embedder", averager=average_weights,
                                parameter_loader=load_tensors)
    hparams["embedder"].load_state_dict(state)
    logger.info("loaded the mean of %d checkpoints (%s): %s", len(ckpts), by,
                ", ".join(c.path.name for c in ckpts))
    return ckpts
