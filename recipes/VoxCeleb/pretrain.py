#!/usr/bin/env python3
"""Self-supervised pre-training of wav2vec2 on unlabelled audio.

    cd recipes/VoxCeleb
    python pretrain.py hparams/pretrain/hubert_tiny.yaml --train_audio DIR_OR_CSV \
        [--valid_audio DIR_OR_CSV] [--output_folder OUT] [--max_steps N] [--device cpu]

``train_audio`` is a manifest CSV (``ID, duration, wav``) or a folder scanned for ``*.wav``
(lowres.data.unlabelled); the run lists it once into ``OUT/train_audio.csv``. Every value of
the yaml is a top-level key that ``--key value`` overrides (hparams/shared/pretrain.yaml).
As train.py: ``max_steps`` optimiser steps of ``batch_size`` random crops (the global batch,
split over DDP processes), the LR schedules of lowres.training.schedules, ``--precision``,
a progress bar, and re-running the same command continues an interrupted run from its
latest checkpoint (model, optimiser, scheduler, step, RNG states, data position) to the
result of an uninterrupted one; ``torchrun --nproc_per_node N pretrain.py ...`` runs DDP.

The objective is the yaml's ``model``: wav2vec 2.0's contrastive one
(hparams/shared/pretrain_contrastive.yaml, e.g. hparams/pretrain/wav2vec2_tiny.yaml) or
HuBERT's masked prediction of MFCC k-means clusters, fitted here before training
(hparams/shared/pretrain_masked_prediction.yaml, e.g. hparams/pretrain/hubert_tiny.yaml).
The result, ``OUT/pretrained`` (and with ``export_every_interval`` ``OUT/pretrained_step<N>``
at every ``val_interval``), is a ``Wav2Vec2ForPreTraining`` checkpoint in the layout of
facebook/wav2vec2-base (contrastive) or a bare ``Wav2Vec2Model`` (masked prediction), which
fine-tunes as::

    python train.py hparams/wav2vec2_tiny_few.yaml --wav2vec2_source OUT/pretrained ...

The objectives live in lowres.training.pretrain and lowres.training.masked_prediction;
this file only wires them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import speechbrain as sb
import torch

from lowres.data import loading as lowres_data
from lowres.data.unlabelled import check_source, run_manifest
from lowres.io.hparams import HparamsError, resolve_hparams
from lowres.io.lists import read_manifest
from lowres.io.tensor_files import UnsafeFileError
from lowres.training.pretrain import PretrainBrain, check_hparams
from lowres.training.ranks import leave_after_training, run_on_main_waiting
from lowres.training.runs import (
    effective_precision,
    optimizer_class,
    parse_recipe_args,
    start_run,
    step_budget_loader,
)
from prepare.errors import USER_ERRORS

logger = logging.getLogger(__name__)


def list_audio(values: dict) -> dict[str, Path]:
    """The run's frozen lists of train_audio (and valid_audio), made on the main process."""
    out = Path(values["output_folder"])
    sources = {k: values[k] for k in ("train_audio", "valid_audio") if values.get(k)}
    for key, source in sources.items():
        check_source(source, key)
        run_on_main_waiting(run_manifest, (source, out / f"{key}.csv", key, values["list_jobs"],
                                           values["min_seconds"]), values["rank_wait_hours"])
    return {key: out / f"{key}.csv" for key in sources}


def main(argv: list[str]) -> None:
    """Check everything, then pre-train (or resume) and save the model in the hub layout."""
    hparams_file, run_opts, overrides, world_size = parse_recipe_args(argv)
    resolved = resolve_hparams(hparams_file, overrides)  # resolved once: checked, built, saved
    values = resolved.values
    check_hparams(values, world_size)
    check_source(values.get("train_audio"), "train_audio")
    run_opts, precision, note = effective_precision(values["precision"], run_opts)
    hparams = start_run(resolved.with_overrides({"precision": precision}), world_size, note)
    lists = list_audio(values)
    train_set = lowres_data.train_dataset(lists["train_audio"], None, hparams["crop_seconds"],
                                          hparams["seed"], hparams["sample_rate"])
    schedule = lowres_data.training_schedule("steps", hparams["val_interval"], len(train_set),
                                             hparams["batch_size"], hparams["max_steps"])

    model = hparams["modules"]["model"]
    if hasattr(model, "fit_targets"):  # masked prediction: k-means of the audio's MFCCs
        model.fit_targets(lowres_data.valid_dataset(lists["train_audio"], None,
                                                    hparams["crop_seconds"],
                                                    hparams["sample_rate"]))
    brain = PretrainBrain(modules=hparams["modules"],
                          opt_class=optimizer_class(hparams["opt_class"],
                                                    hparams["fused_optimizer"]),
                          hparams=hparams, run_opts=run_opts,
                          checkpointer=hparams["checkpointer"])
    brain.optimizer_step_limit = hparams["max_steps"]
    train_loader = step_budget_loader(brain, train_set, schedule, hparams, world_size)
    brain.valid_loader = None
    if "valid_audio" in lists:
        valid_set = lowres_data.valid_dataset(lists["valid_audio"], None,
                                              hparams["crop_seconds"], hparams["sample_rate"])
        brain.valid_loader = brain.make_dataloader(
            valid_set, sb.Stage.VALID, ckpt_prefix=None, batch_size=hparams["batch_size"]
            // world_size, num_workers=hparams["num_workers"],
            generator=torch.Generator().manual_seed(hparams["seed"]))  # global RNG untouched
    hours = read_manifest(lists["train_audio"]).duration.sum() / 3600
    logger.info("pre-training on %d files (%.1f h) for %d steps of %d crops of %s s",
                len(train_set), hours, hparams["max_steps"], hparams["batch_size"],
                hparams["crop_seconds"])
    brain.fit(hparams["epoch_counter"], train_loader, brain.valid_loader)
    if leave_after_training(hparams["rank_wait_hours"]):  # the main process saves, alone
        folder = hparams["modules"]["model"].save_pretrained(hparams["pretrained_folder"])
        logger.info("pre-trained model (step %d, hub layout): %s", brain.optimizer_step, folder)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (HparamsError, UnsafeFileError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:  # Ctrl-C; during training RunInterrupted says where it resumes
        print(str(err) or "interrupted", file=sys.stderr)
        sys.exit(130)
