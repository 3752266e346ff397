"""The data of a speaker-recognition run: when it validates (:func:`training_schedule`) and
its loaders (:func:`make_loaders`), from the files of its manifests or from shards.

The training loader draws one crop per item over the step budget and is checkpointed, so a
resumed run continues at the same position in the data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CategoricalEncoder
from torch.utils.data import DataLoader

from lowres.data import augment as lowres_augment
from lowres.data import loading as lowres_data
from lowres.data import shards as shard_data
from lowres.io.hparams import invalid_hparam
from lowres.io.lists import read_trials
from lowres.io.run_folder import LABEL_ENCODER
from lowres.scoring.trials import debug_trials
from lowres.training.ranks import run_on_main_waiting
from lowres.training.runs import step_budget_loader

logger = logging.getLogger(__name__)


def training_schedule(values: dict, num_items: int) -> lowres_data.Schedule:
    """When training validates; HparamsError when it would never validate by max_steps."""
    schedule = lowres_data.training_schedule(
        values["val_schedule"], values["val_interval"], num_items,
        values["batch_size"], values["max_steps"])
    if not schedule.validation_steps:
        per_pass = lowres_data.pass_batches(num_items, values["batch_size"])
        raise invalid_hparam(
            "val_interval", values["val_interval"], f"with val_schedule="
            f"{values['val_schedule']} it counts the batches of each pass over the data "
            f"({per_pass} batches: {num_items} files / batch_size {values['batch_size']}), "
            f"so no validation would run by max_steps={values['max_steps']} and there would "
            "be no best checkpoint; use val_interval epoch or at most "
            f"{min(per_pass, values['max_steps'])}, or val_schedule steps")
    return schedule


def shared_speaker_encoder(train_csv: str | Path, path: Path,
                           wait_hours: float) -> CategoricalEncoder:
    """The speaker label encoder of ``train_csv``, saved to ``path`` by the main process
    and then read by every process: with one writer, no process can read a file that
    another is still writing on a shared filesystem."""
    run_on_main_waiting(lowres_data.speaker_encoder, (train_csv, path), wait_hours)
    encoder = CategoricalEncoder()
    encoder.load(path)
    return encoder


def make_loaders(brain: sb.Brain, hparams: dict, schedule: lowres_data.Schedule,
                 world_size: int) -> tuple[DataLoader, DataLoader]:
    """Training loader (StepBudgetSampler over ``schedule``, one crop per draw) and
    validation loader; with utterance normalisation both normalise with file statistics."""
    encoder = shared_speaker_encoder(hparams["train_csv"],
                                     Path(hparams["save_folder"]) / LABEL_ENCODER,
                                     hparams["rank_wait_hours"])
    normalise = hparams.get("input_normalisation") == "utterance"
    brain.input_normalised = normalise
    augment = lowres_augment.from_hparams(hparams)  # None: as the study, no augmentation
    if augment is not None:
        logger.info("augmenting the training crops: %s", augment.config)
        if augment.on_device:
            brain.device_augment = augment.augment_batch
    sampler_class = lowres_data.StepBudgetSampler
    if hparams.get("data_format", "files") == "shards":  # the same items, read from shards
        train_set, valid_set, sampler_class = shard_data.datasets(hparams, encoder, normalise,
                                                                  augment)
    else:
        train_set = lowres_data.train_dataset(hparams["train_csv"], encoder,
                                              hparams["crop_seconds"], hparams["seed"],
                                              hparams["sample_rate"], normalise, augment)
        valid_set = lowres_data.valid_dataset(hparams["valid_csv"], encoder,
                                              hparams["crop_seconds"], hparams["sample_rate"],
                                              normalise)
    batch = hparams["batch_size"]
    if brain.debug:  # validate on the files of a few trials, which debug_batches cover
        trials = debug_trials(read_trials(hparams["val_trials"]),
                              brain.debug_batches * (batch // world_size))
        files = set(trials.id1) | set(trials.id2)
        valid_set = valid_set.filtered_sorted(key_test={"id": lambda i: i in files})
        logger.warning("debug mode: validating on the %d files of %d validation trials",
                       len(valid_set), len(trials))
    # this process's share of the step budget, checkpointed as SpeechBrain's dataloader-TRAIN
    train_loader = step_budget_loader(brain, train_set, schedule, hparams, world_size,
                                      sampler_class)
    common = {"batch_size": batch // world_size, "num_workers": hparams["num_workers"],
              "pin_memory": str(brain.device).startswith("cuda")}
    valid_loader = brain.make_dataloader(
        valid_set, sb.Stage.VALID, ckpt_prefix=None,
        generator=torch.Generator().manual_seed(hparams["seed"]), **common)
    steps = schedule.validation_steps
    logger.info("%d training files of %d speakers, %d validation files; val_schedule %s: "
                "%d validations, at steps %s%s", len(train_set), len(encoder), len(valid_set),
                hparams["val_schedule"], len(steps),
                ", ".join(map(str, steps[:4])) + (", ..." if len(steps) > 4 else ""),
                "" if schedule.validate[-1] else f"; none at max_steps {hparams['max_steps']}")
    return train_loader, valid_loader
