#!/usr/bin/env python3
"""Train a speaker embedder (x-vector, ECAPA-TDNN or wav2vec2) on a VoxCeleb2 subset.

    cd recipes/VoxCeleb
    python train.py hparams/wav2vec2_tiny_few.yaml --data_folder DIR [--lr 5.62e-6] \
        [--output_folder OUT] [--precision fp16|bf16|fp32] [--device cpu]

Every value of the yaml is a top-level key that ``--key value`` overrides (see
hparams/shared/); every value train.py can check (the evaluation's included) is checked
before the first training step. Re-running the same command continues an interrupted
run from its latest checkpoint (model, optimiser, scheduler, step, RNG states,
best-so-far and the position in the data); a finished run does nothing more.

Validation (``val_schedule``, lowres.data.loading.training_schedule): before training
(step 0: logged only, never a candidate for testing) and, by default as the published
runs, every ``val_interval`` batches counted within each pass over the data; the best
validation's checkpoint and the last one are tested after training. A run whose loss
stays non-finite (SpeechBrain's ``--nonfinite_patience``) stops, is recorded as diverged
(``OUT/diverged.json``) and is still evaluated: results.json says it diverged.

``--tensorboard true`` also logs train loss, accuracy and lr, and the validation loss,
accuracy and EER, by optimiser step to ``tensorboard_folder`` (SpeechBrain's
TensorboardLogger); ``--wandb true`` logs the same to W&B (SpeechBrain's WandBLogger;
``wandb_mode: offline`` by default: an offline run under ``OUTPUT/wandb``, ``wandb sync`` uploads
it). SpeechBrain's ``--debug`` runs a few batches (recipes.csv's commands).

Multi-GPU (SpeechBrain DDP)::

    torchrun --nproc_per_node 4 train.py hparams/ecapa_full.yaml --data_folder DIR

``batch_size`` is the global batch: each of the N processes loads ``batch_size / N``
items per step (it must divide), so ``max_steps``, the LR schedule, ``val_interval``
and the freeze schedule all count the same optimiser steps as a one-GPU run and need no
scaling by the world size. Validation runs on every process; rank 0 saves.

The pieces live in ``lowres`` (data, schedules, models, metrics); this file only wires
them into SpeechBrain's ``Brain``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.distributed import if_main_process, run_on_main

from lowres.data import augment as lowres_augment
from lowres.data import loading as lowres_data
from lowres.data import shards as shard_data
from lowres.io.hparams import HparamsError, plain_values
from lowres.io.lists import read_manifest, read_trials, test_set_files, test_set_names
from lowres.io.run_folder import (
    LABEL_ENCODER,
    diverged_path,
    mark_diverged,
    read_diverged,
    save_folder,
)
from lowres.io.tensor_files import UnsafeFileError
from lowres.models.freeze import apply_freeze_schedule
from lowres.scoring.eval_settings import check_values
from lowres.scoring.metrics import eer
from lowres.scoring.trials import debug_trials, score_trials
from lowres.training.runs import (
    PRECISIONS,
    VALID_PRECISIONS,
    ResumableBrain,
    effective_precision,
    optimizer_class,
    parse_recipe_args,
    start_run,
    step_budget_loader,
    unwrap,
    with_valid_precision,
)
from lowres.training.schedules import SCHEDULES
from prepare.errors import USER_ERRORS

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
WANDB_MODES = ("offline", "online")  # offline: written under OUTPUT/wandb, no network


class SpeakerBrain(ResumableBrain):
    """Embedder -> cosine classifier -> AAM softmax; validation EER on the val trials."""

    input_normalised = False  # make_loaders: the data normalise the crops (utterance mode)
    device_augment = None  # make_loaders: augment_side device's CropAugment.augment_batch

    def compute_forward(self, batch, stage):
        wavs, lens = batch.sig
        wavs, lens = wavs.to(self.device), lens.to(self.device)
        if stage == sb.Stage.TRAIN and self.device_augment is not None:
            wavs = self.device_augment(wavs, lens, batch)  # the loader's draws, applied here
        embedder = self.modules.embedder
        # utterance normalisation: the data normalised each crop with its file's statistics
        kwargs = {"normalised": True} if self.input_normalised else {}
        if stage != sb.Stage.TRAIN and not unwrap(embedder).padding_invariant:
            return _one_at_a_time(embedder, wavs, lens, **kwargs)
        return embedder(wavs, lens, **kwargs)

    def compute_objectives(self, embeddings, batch, stage):
        labels = batch.spk_id_encoded.data.to(self.device)
        logits = self.modules.classifier(embeddings.unsqueeze(1)).float()
        loss = self.hparams.loss(logits, labels)
        correct = (logits.squeeze(1).argmax(-1) == labels.squeeze(1)).sum().item()
        self.stats.add(loss.item(), correct, len(labels))
        if stage == sb.Stage.TRAIN:
            self.log_stats.add(loss.item(), correct, len(labels))
        else:
            for utt, emb in zip(batch.id, embeddings.detach().float().cpu(), strict=True):
                self.val_embeddings[utt] = emb
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.stats = RunningStats()
        if stage == sb.Stage.TRAIN:
            self.log_stats = RunningStats()
        else:
            self.val_embeddings = {}

    def on_fit_batch_start(self, batch, should_step):
        if hasattr(self.hparams, "wav2vec_initially_frozen"):
            h = self.hparams
            # as published: a frozen backbone in train mode once a validation of the
            # training ran, i.e. from the second interval on (lowres.models.freeze)
            apply_freeze_schedule(unwrap(self.modules.embedder), self.optimizer_step,
                                  h.wav2vec_initially_frozen, h.num_frozen_steps,
                                  train_mode=h.frozen_backbone_as_published
                                  and h.epoch_counter.current > 1)

    def log_train(self, step, lr, stats):
        super().log_train(step, lr, stats)
        self.track(step, {"lr": lr, **{f"train/{k}": v for k, v in stats.items()}})

    tensorboard = None  # main(): SpeechBrain's TensorboardLogger when the yaml turns it on
    wandb = None  # main(): SpeechBrain's WandBLogger when the yaml turns it on

    def track(self, step: int, scalars: dict) -> None:
        """``scalars`` at optimiser step ``step`` to TensorBoard and W&B, if on (main process)."""
        writer = getattr(self.tensorboard, "writer", None)
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, step)
            writer.flush()
        run = getattr(self.wandb, "run", None)
        if run is not None:  # by optimiser step: WandBLogger.log_stats would use the epoch
            run.log(scalars, step=step)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_summary = self.stats.summary()
            return
        # --debug embeds a few batches: score the trials of those files only (logged)
        scores, labels = score_trials(self.val_embeddings, self.val_trials, "validation",
                                      only_embedded=self.debug)
        val_eer = eer(scores, labels).eer if np.isfinite(scores).all() else math.nan
        lr = self.optimizer.param_groups[0]["lr"]
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "step": self.optimizer_step, "lr": lr},
            train_stats=getattr(self, "train_summary", None) if epoch else None,
            valid_stats={**self.stats.summary(), "EER%": round(100 * val_eer, 3)},
        )
        self.track(self.optimizer_step, {
            f"valid/{k}": v for k, v in {**self.stats.summary(), "EER%": 100 * val_eer}.items()})
        if epoch == 0:  # the untrained model: logged, never a candidate for testing
            return
        # a non-finite EER is no candidate for "best" either (no val_eer in the meta)
        meta = {"val_eer": val_eer} if math.isfinite(val_eer) else {}
        self.checkpointer.save_and_keep_only(
            meta={**meta, "step": self.optimizer_step},
            min_keys=["val_eer"], num_to_keep=self.keep, end_of_epoch=True,
        )

    def _fit_valid(self, valid_set, epoch, enable):
        if epoch == 0 or self.schedule.validate[epoch - 1]:
            return super()._fit_valid(valid_set, epoch, enable)
        # val_schedule pass: the last stretch ends at max_steps without a validation
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "step": self.optimizer_step,
                        "lr": self.optimizer.param_groups[0]["lr"]},
            train_stats=getattr(self, "train_summary", None))
        self.checkpointer.save_and_keep_only(meta={"step": self.optimizer_step},
                                             min_keys=["val_eer"], num_to_keep=self.keep,
                                             end_of_epoch=True)

    def check_loss_isfinite(self, loss):
        try:
            super().check_loss_isfinite(loss)
        except ValueError as err:  # SpeechBrain: non-finite loss, patience exhausted
            raise Diverged(f"the loss was not finite {self.nonfinite_count} times since the "
                           f"last validation (nonfinite_patience {self.nonfinite_patience})"
                           ) from err

    @property
    def keep(self) -> int:
        """Latest and best checkpoints kept: average_checkpoints of each when averaging."""
        return max(1, self.hparams.average_checkpoints)

    def on_fresh_start(self):
        if self.hparams.init_from_run:  # a fine-tuning stage starts from its parent
            ckpt = load_parent(self.hparams.init_from_run,
                               {"embedder": self.hparams.embedder,
                                "classifier": self.hparams.classifier})
            self.hparams.train_logger.log_stats(stats_meta={
                "init_from_run": self.hparams.init_from_run, "checkpoint": ckpt.path.name})
        super().on_fresh_start()


def parent_checkpoint(parent: str | os.PathLike, output_folder: str | os.PathLike | None = None):
    """The best (min val_eer) checkpoint of ``init_from_run``, the run a stage fine-tunes."""
    def bad(why):
        raise HparamsError(f"invalid hparam init_from_run={os.fspath(parent)!r}: {why}")

    if output_folder is not None and Path(parent).resolve() == Path(output_folder).resolve():
        bad("it is this run's own output_folder (a fine-tuning stage needs its own)")
    ckpt = Checkpointer(save_folder(parent)).find_checkpoint(min_key="val_eer")
    if ckpt is None:
        bad(f"no checkpoint with a val_eer in {save_folder(parent)} (train that run first)")
    return ckpt


def load_parent(parent: str | os.PathLike, modules: dict):
    """Load the parent run's best embedder and classifier weights into ``modules``."""
    ckpt = parent_checkpoint(parent)
    for name, module in modules.items():
        module.load_state_dict(torch.load(ckpt.paramfiles[name], map_location="cpu",
                                          weights_only=True))
    logger.info("initialised from %s (%s, meta %s)", parent, ckpt.path.name, ckpt.meta)
    return ckpt


class Diverged(RuntimeError):
    """Training stopped: its loss stayed non-finite."""


class RunningStats:
    """Mean loss and accuracy over the batches seen since the last reset."""

    def __init__(self):
        self.loss_sum, self.correct, self.count, self.batches = 0.0, 0, 0, 0

    def add(self, loss, correct, n):
        self.loss_sum += loss
        self.correct += correct
        self.count += n
        self.batches += 1

    def summary(self):
        if not self.batches:
            return {}
        return {"loss": round(self.loss_sum / self.batches, 4),
                "acc": round(self.correct / self.count, 4)}


def _one_at_a_time(embedder, wavs, lens, **kwargs):
    """Embeddings of a padded batch, one file at a time, for padding-sensitive models."""
    if bool((lens >= 1).all()):
        return embedder(wavs, lens, **kwargs)
    out = []
    for wav, rel in zip(wavs, lens, strict=True):
        n = int(round(float(rel) * wavs.shape[1]))
        out.append(embedder(wav[None, :n], torch.ones(1, device=wavs.device), **kwargs))
    return torch.cat(out)


# ---------------------------------------------------------------------------
# hparams checks, data preparation, data loaders


def check_hparams(values: dict, world_size: int) -> None:
    """Raise HparamsError naming the key and value of the first invalid setting."""

    def bad(key, why):
        raise HparamsError(f"invalid hparam {key}={values.get(key)!r}: {why}")

    def positive_number(key, integer=False):
        v = values.get(key)
        kinds = (int,) if integer else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds) or not v > 0:
            bad(key, f"must be a positive {'integer' if integer else 'number'}")

    positive_number("lr")
    positive_number("max_steps", integer=True)
    positive_number("batch_size", integer=True)
    positive_number("crop_seconds")
    positive_number("log_interval", integer=True)
    if values.get("lr_schedule") not in SCHEDULES:
        bad("lr_schedule", f"must be one of {', '.join(SCHEDULES)}")
    if "regularisation" in values:
        from lowres.models.wav2vec2 import REGULARISATION_PRESETS

        if values["regularisation"] not in REGULARISATION_PRESETS:
            bad("regularisation", f"must be one of {', '.join(REGULARISATION_PRESETS)}")
    if "ssl_pooling" in values:
        from lowres.models.wav2vec2 import POOLINGS, SSL_MODEL_CLASSES

        if values["ssl_pooling"] not in POOLINGS:
            bad("ssl_pooling", f"must be one of {', '.join(POOLINGS)}")
        if values.get("ssl_model_type") not in ("auto", *SSL_MODEL_CLASSES):
            bad("ssl_model_type", f"must be auto or one of {', '.join(SSL_MODEL_CLASSES)}")
    if values.get("precision") not in PRECISIONS:
        bad("precision", f"must be one of {', '.join(PRECISIONS)}")
    if values.get("valid_precision") not in VALID_PRECISIONS:
        bad("valid_precision", f"must be one of {', '.join(VALID_PRECISIONS)}")
    for key in ("compile_embedder", "fused_optimizer", "evaluate_last"):
        if not isinstance(values.get(key, False), bool):
            bad(key, "must be true or false")
    if values.get("compile_mode", "default") not in COMPILE_MODES:
        bad("compile_mode", f"must be one of {', '.join(COMPILE_MODES)}")
    v = values.get("val_interval")
    if v != "epoch" and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
        bad("val_interval", "must be a positive number of steps or 'epoch'")
    if values.get("val_schedule") not in lowres_data.VAL_SCHEDULES:
        bad("val_schedule", f"must be one of {', '.join(lowres_data.VAL_SCHEDULES)}")
    if "input_normalisation" in values and \
            values["input_normalisation"] not in lowres_data.INPUT_NORMALISATIONS:
        bad("input_normalisation",
            f"must be one of {', '.join(lowres_data.INPUT_NORMALISATIONS)}")
    check_values(values)  # what the evaluation after training reads: test_sets, AS-norm ...
    if not isinstance(values.get("tensorboard", False), bool):
        bad("tensorboard", "must be true or false")
    if values.get("tensorboard") and importlib.util.find_spec("tensorboard") is None:
        bad("tensorboard", "needs the tensorboard package (requirements.txt)")
    if not isinstance(values.get("wandb", False), bool):
        bad("wandb", "must be true or false")
    if values.get("wandb"):
        if importlib.util.find_spec("wandb") is None:
            bad("wandb", "needs the wandb package (requirements.txt)")
        if values.get("wandb_mode") not in WANDB_MODES:
            bad("wandb_mode", f"must be one of {', '.join(WANDB_MODES)}")
        if not isinstance(values.get("wandb_project"), str) or not values["wandb_project"]:
            bad("wandb_project", "must be a W&B project name")
        timeout = values.get("wandb_init_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            bad("wandb_init_timeout", "must be a positive number of seconds")
    from prepare.voxceleb import DEFAULTS

    unknown = sorted(set(dict(values.get("prepare_options") or {})) - set(DEFAULTS))
    if unknown:
        bad("prepare_options", f"unknown prepare.voxceleb option(s) {', '.join(unknown)}")
    if values.get("init_from_run"):
        parent_checkpoint(values["init_from_run"], values["output_folder"])
    lowres_augment.augment_config(values)  # augmentation keys and their prepared CSVs
    shard_data.check_hparams(values)  # data_format, shard_folder
    if values["batch_size"] % world_size:
        bad("batch_size", f"the global batch must divide over the {world_size} DDP processes")
    if values.get("wav2vec_initially_frozen"):  # the SSL families (wav2vec2, ssl_ecapa)
        n = values.get("num_frozen_steps")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            bad("num_frozen_steps", "must be a non-negative integer (or null: never unfreeze)")


def manifests_ready(values: dict) -> bool:
    return all(Path(values[k]).is_file() for k in ("train_csv", "valid_csv", "val_trials"))


def check_prepare_options(values: dict) -> None:
    """HparamsError when ``prepare_options`` asks for manifests other than the existing
    ones were made with: those options act only when manifests are made, so a changed
    value would otherwise do nothing, silently. Unset options are not compared."""
    from prepare.voxceleb import content_options, recorded_options

    options = dict(values.get("prepare_options") or {})
    given, folder = content_options(options), Path(values["manifest_folder"]) / values["subset"]
    recorded = recorded_options(values["manifest_folder"], values["subset"])
    if recorded is None:
        logger.log(logging.WARNING if given else logging.INFO, "the prepare_options of %s "
                   "cannot be checked: it was prepared before lowres recorded them", folder)
        return
    for key, value in given.items():
        if key in recorded and value != recorded[key]:
            raise HparamsError(
                f"invalid hparam prepare_options={options!r}: {key}={value!r}, but the "
                f"manifests in {folder} were made with {key}={recorded[key]!r} "
                "(prepare_options act only when manifests are made: use another "
                "manifest_folder, or delete that folder to remake it)")


def prepare_manifests(values: dict) -> None:
    """Make the manifests with prepare.voxceleb (main process only) if they are missing;
    existing ones must have been made with the yaml's ``prepare_options``."""
    if manifests_ready(values):
        check_prepare_options(values)
        return
    data_folder = values.get("data_folder")
    if not data_folder or not Path(data_folder).is_dir():
        raise HparamsError(
            f"invalid hparam data_folder={data_folder!r}: the manifests are missing "
            f"(manifest_folder={values['manifest_folder']!r}, no {values['train_csv']}) and "
            "data_folder must be an existing VoxCeleb folder to prepare them")
    from prepare.voxceleb import prepare_voxceleb

    def prepare():
        try:
            prepare_voxceleb(data_folder, values["manifest_folder"],
                             **dict(values.get("prepare_options") or {}))
        except TypeError as err:
            raise HparamsError(f"invalid hparam prepare_options="
                               f"{values.get('prepare_options')!r}: {err}") from err

    run_on_main(prepare)
    if not manifests_ready(values):
        raise HparamsError(f"prepare.voxceleb ran but subset {values['subset']!r} has no "
                           f"manifests in manifest_folder={values['manifest_folder']!r}")


def check_test_sets(values: dict) -> None:
    """The test manifests the evaluation after training will read exist (checked now, not
    at the end of a long run)."""
    if not values.get("evaluate_after_training"):
        return
    for name in test_set_names(values["test_sets"]):
        for path in test_set_files(values["manifest_folder"], name):
            if not path.is_file():
                raise HparamsError(
                    f"invalid hparam test_sets={values['test_sets']!r}: {path} is missing "
                    f"(prepare it: python -m prepare.voxceleb --data_folder DIR --save_folder "
                    f"{values['manifest_folder']} --test_sets {name}, or leave {name} out)")


def prepare_wav_stats(values: dict) -> None:
    """Utterance normalisation: add the per-file statistics to the train and validation
    manifests when they lack them (once, main process; prepare.wav_stats)."""
    if values.get("input_normalisation") != "utterance":
        return
    from prepare.wav_stats import add_wav_stats

    jobs = dict(values.get("prepare_options") or {}).get("jobs") or (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())

    def add():
        for key in ("train_csv", "valid_csv"):
            if add_wav_stats(values[key], jobs):
                logger.info("input_normalisation utterance: added wav_mean / wav_std to %s",
                            values[key])

    run_on_main(add)


def training_schedule(values: dict, num_items: int) -> lowres_data.Schedule:
    """When training validates; HparamsError when it would never validate by max_steps."""
    schedule = lowres_data.training_schedule(
        values["val_schedule"], values["val_interval"], num_items,
        values["batch_size"], values["max_steps"])
    if not schedule.validation_steps:
        per_pass = lowres_data.pass_batches(num_items, values["batch_size"])
        raise HparamsError(
            f"invalid hparam val_interval={values['val_interval']!r}: with val_schedule="
            f"{values['val_schedule']} it counts the batches of each pass over the data "
            f"({per_pass} batches: {num_items} files / batch_size {values['batch_size']}), "
            f"so no validation would run by max_steps={values['max_steps']} and there would "
            "be no best checkpoint; use val_interval epoch or at most "
            f"{min(per_pass, values['max_steps'])}, or val_schedule steps")
    return schedule


def compile_run_opts(values: dict, run_opts):
    """SpeechBrain's run options with ``compile_embedder``: torch.compile of the embedder
    alone (Brain._compile, in ``compile_mode``), unless the command line's ``--compile`` /
    ``--compile_module_keys`` already chose the modules."""
    if "compile_mode" in run_opts.overridden_args and run_opts.compile_mode not in COMPILE_MODES:
        raise HparamsError(f"invalid hparam compile_mode={run_opts.compile_mode!r}: must be "
                           f"one of {', '.join(COMPILE_MODES)}")
    if not values.get("compile_embedder") or run_opts.compile:
        return run_opts
    return dataclasses.replace(
        run_opts, compile=True, compile_module_keys=run_opts.compile_module_keys or ["embedder"],
        overridden_args=run_opts.overridden_args | {"compile", "compile_module_keys"})


def precision_run_opts(values: dict, run_opts) -> tuple[object, str, str]:
    """(run options, training precision, note): SpeechBrain's run options with the training
    precision the device can use (the note says when it fell back, :func:`effective_precision`)
    and the precision of the validations that choose the tested checkpoint
    (``valid_precision``, :func:`with_valid_precision`)."""
    run_opts, precision, note = effective_precision(values["precision"], run_opts)
    return with_valid_precision(run_opts, values["valid_precision"]), precision, note


def make_loaders(brain, hparams, schedule: lowres_data.Schedule, world_size: int):
    """Training loader (StepBudgetSampler over ``schedule``, one crop per draw) and
    validation loader; with utterance normalisation both normalise with file statistics."""
    encoder = lowres_data.speaker_encoder(hparams["train_csv"],
                                          Path(hparams["save_folder"]) / LABEL_ENCODER)
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


def evaluate_after_training(hparams, device, debug_files=None):
    """Hook: test the last (unless evaluate_last is false), the averaged
    (average_checkpoints) and the best checkpoint (lowres.scoring.evaluation, issues 4, 13).

    ``eval/best/results.json`` is written last: it marks the run as finished.  With
    ``--debug`` (``debug_files``): a few files of each list only, into ``eval/debug/``.
    """
    from lowres.scoring.evaluation import evaluate_run

    # eval/best last; evaluate_run reads test_sets in every form a user types
    which_ones = (*(["last"] if hparams.get("evaluate_last", True) else []),
                  *(["averaged"] if hparams["average_checkpoints"] else []), "best")
    for which in which_ones:
        evaluate_run(hparams, checkpoint=which, test_sets=hparams["test_sets"], device=device,
                     debug_files=debug_files)


# ---------------------------------------------------------------------------


def wandb_logger(hparams, config: dict):
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


def main(argv):
    hparams_file, run_opts, overrides, world_size = parse_recipe_args(argv)
    values = plain_values(hparams_file, overrides)
    check_hparams(values, world_size)
    run_opts = compile_run_opts(values, run_opts)  # and checks --compile_mode
    prepare_manifests(values)
    check_test_sets(values)
    prepare_wav_stats(values)
    train = read_manifest(values["train_csv"], required=("ID", "spk_id"))
    schedule = training_schedule(values, len(train))
    extra = {}
    n_speakers = train.spk_id.nunique()
    if n_speakers != values["n_speakers"]:
        logger.info("n_speakers=%s in the yaml, %d in %s: using %d", values["n_speakers"],
                    n_speakers, values["train_csv"], n_speakers)
        extra["n_speakers"] = n_speakers
    run_opts, extra["precision"], note = precision_run_opts(values, run_opts)
    overrides = {**overrides, **extra}
    hparams = start_run(hparams_file, overrides, world_size, note)
    out = Path(hparams["output_folder"])

    opt_class = optimizer_class(hparams["opt_class"], hparams["fused_optimizer"])
    brain = SpeakerBrain(modules=hparams["modules"], opt_class=opt_class,
                         hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.optimizer_step_limit = hparams["max_steps"]
    if hparams.get("tensorboard"):
        from speechbrain.utils.train_logger import TensorboardLogger

        brain.tensorboard = TensorboardLogger(hparams["tensorboard_folder"])
    if hparams.get("wandb"):
        brain.wandb = wandb_logger(hparams, {**values, **extra})
    train_loader, brain.valid_loader = make_loaders(brain, hparams, schedule, world_size)
    brain.val_trials = read_trials(hparams["val_trials"])
    diverged = read_diverged(out)
    if diverged:
        logger.warning("training diverged at step %s (%s; %s): not training again (delete "
                       "that file to retry)", diverged["step"], diverged["reason"],
                       diverged_path(out))
    else:
        try:
            brain.fit(hparams["epoch_counter"], train_loader, brain.valid_loader)
        except Diverged as err:
            logger.error("training diverged at step %d: %s", brain.optimizer_step, err)
            # the weights it ended with are the "last" checkpoint (the evaluation marks them)
            hparams["checkpointer"].save_and_keep_only(
                meta={"step": brain.optimizer_step}, min_keys=["val_eer"],
                num_to_keep=brain.keep, end_of_epoch=True)
            if if_main_process():
                mark_diverged(out, brain.optimizer_step, str(err))

    best = hparams["checkpointer"].find_checkpoint(min_key="val_eer")
    if best is not None and if_main_process():
        logger.info("best validation EER %.3f%% at step %d (%s)", 100 * best.meta["val_eer"],
                    best.meta["step"], best.path)
    if hparams["evaluate_after_training"]:
        debug_files = brain.debug_batches * hparams.get("eval_batch_size", 16) \
            if brain.debug else None
        run_on_main(evaluate_after_training, args=[hparams, brain.device, debug_files])
    if getattr(brain.wandb, "run", None) is not None:
        brain.wandb.run.finish()  # offline: the run folder is complete; online: uploaded


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (HparamsError, UnsafeFileError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
