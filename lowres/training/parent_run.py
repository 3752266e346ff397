"""Starting a fine-tuning stage from its parent run (hparam ``init_from_run``).

A stage begins with the embedder and classifier weights of the parent's best validation
checkpoint; :func:`parent_checkpoint` is also what the hparams checks call, so a missing or
untrained parent is refused before anything is built.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import Checkpoint, Checkpointer

from lowres.io.hparams import invalid_hparam
from lowres.io.run_folder import save_folder

logger = logging.getLogger(__name__)


def parent_checkpoint(parent: str | os.PathLike,
                      output_folder: str | os.PathLike | None = None) -> Checkpoint:
    """The best (min val_eer) checkpoint of ``init_from_run``, the run a stage fine-tunes."""
    if output_folder is not None and Path(parent).resolve() == Path(output_folder).resolve():
        raise invalid_hparam("init_from_run", os.fspath(parent), "it is this run's own "
                             "output_folder (a fine-tuning stage needs its own)")
    ckpt = Checkpointer(save_folder(parent)).find_checkpoint(min_key="val_eer")
    if ckpt is None:
        raise invalid_hparam("init_from_run", os.fspath(parent), "no checkpoint with a "
                             f"val_eer in {save_folder(parent)} (train that run first)")
    return ckpt


def load_parent(parent: str | os.PathLike, modules: dict[str, torch.nn.Module]) -> Checkpoint:
    """Load the parent run's best embedder and classifier weights into ``modules``."""
    ckpt = parent_checkpoint(parent)
    for name, module in modules.items():
        module.load_state_dict(torch.load(ckpt.paramfiles[name], map_location="cpu",
                                          weights_only=True))
    logger.info("initialised from %s (%s, meta %s)", parent, ckpt.path.name, ckpt.meta)
    return ckpt
