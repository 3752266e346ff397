"""Experiment trackers of a training run, when the yaml turns them on: SpeechBrain's
TensorboardLogger (``tensorboard``) and WandBLogger (``wandb``), which train.py's Brain
feeds by optimiser step (lowres.training.speaker_brain.SpeakerBrain.track).

``wandb_mode: offline`` (the default) writes the run under ``OUTPUT/wandb`` without any
network call; ``wandb sync`` uploads it later.
"""

from __future__ import annotations

import os

WANDB_MODES = ("offline", "online")  # offline: written under OUTPUT/wandb, no network


def wandb_logger(hparams: dict, config: dict):
    """SpeechBrain's WandBLogger for this run (a run on the main process only): project
    ``wandb_project``, mode ``wandb_mode``, files under ``<output_folder>/wandb``, the resolved
    plain hyperparameters as its config.  Silent, and an online init gives up after
    ``wandb_init_timeout`` seconds instead of blocking training; offline makes no network call.
    """
    import wandb
    from speechbrain.utils.train_logger import WandBLogger

    os.environ.setdefault("WANDB_SILENT", "true")
    return WandBLogger(
        wandb.init, project=hparams["wandb_project"], mode=hparams["wandb_mode"],
        dir=hparams["output_folder"], config=config,
        settings=wandb.Settings(silent=True, init_timeout=hparams["wandb_init_timeout"]))


def open_trackers(brain, hparams: dict, config: dict) -> None:
    """Set ``brain.tensorboard`` and ``brain.wandb`` to the loggers the yaml turns on
    (``config``: the plain hyperparameters W&B records)."""
    if hparams.get("tensorboard"):
        from speechbrain.utils.train_logger import TensorboardLogger

        brain.tensorboard = TensorboardLogger(hparams["tensorboard_folder"])
    if hparams.get("wandb"):
        brain.wandb = wandb_logger(hparams, config)


def close_trackers(brain) -> None:
    """Finish the W&B run: offline, its folder is complete; online, it is uploaded."""
    if getattr(brain.wandb, "run", None) is not None:
        brain.wandb.run.finish()
