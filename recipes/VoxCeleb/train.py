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
scaling by the world size. Validation runs on every process; rank 0 saves. Once training
is over, every process leaves the process group and rank 0 alone tests the run
(lowres.training.ranks: no collective waits on that long evaluation).

The pieces live in ``lowres``: the Brain (lowres.training.speaker_brain), the checks of the
hparams (speaker_checks), the manifests (manifests), the loaders (speaker_loaders), the
parent run of a fine-tuning stage (parent_run), the trackers (tracking) and the evaluation
(lowres.scoring.evaluation); this file only wires them, as SpeechBrain's
recipes/VoxCeleb/SpeakerRec/train_speaker_embeddings.py.
"""

from __future__ import annotations

import logging
import sys

from speechbrain.utils.distributed import if_main_process

from lowres.io.hparams import HparamsError, resolve_hparams
from lowres.io.lists import read_manifest, read_trials
from lowres.io.tensor_files import UnsafeFileError
from lowres.scoring.evaluation import evaluate_after_training
from lowres.training.manifests import check_test_sets, prepare_manifests, prepare_wav_stats
from lowres.training.ranks import leave_after_training
from lowres.training.runs import (
    compile_run_opts,
    optimizer_class,
    parse_recipe_args,
    precision_run_opts,
    start_run,
)
from lowres.training.speaker_brain import SpeakerBrain
from lowres.training.speaker_checks import check_hparams
from lowres.training.speaker_loaders import make_loaders, training_schedule
from lowres.training.tracking import close_trackers, open_trackers
from prepare.errors import USER_ERRORS

logger = logging.getLogger(__name__)


def main(argv: list[str]) -> None:
    """Check everything, then train (or resume, or skip a diverged run) and evaluate."""
    hparams_file, run_opts, overrides, world_size = parse_recipe_args(argv)
    resolved = resolve_hparams(hparams_file, overrides)  # resolved once: checked, built, saved
    values = resolved.values
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
    resolved = resolved.with_overrides(extra)  # resolved again only if they change a value
    hparams = start_run(resolved, world_size, note)

    opt_class = optimizer_class(hparams["opt_class"], hparams["fused_optimizer"])
    brain = SpeakerBrain(modules=hparams["modules"], opt_class=opt_class,
                         hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.optimizer_step_limit = hparams["max_steps"]
    open_trackers(brain, hparams, resolved.values)
    train_loader, brain.valid_loader = make_loaders(brain, hparams, schedule, world_size)
    brain.val_trials = read_trials(hparams["val_trials"])
    brain.fit_unless_diverged(train_loader)

    best = hparams["checkpointer"].find_checkpoint(min_key="val_eer")
    if best is not None and if_main_process():
        logger.info("best validation EER %.3f%% at step %d (%s)", 100 * best.meta["val_eer"],
                    best.meta["step"], best.path)
    main_process = leave_after_training(hparams["rank_wait_hours"])  # it tests, alone
    if hparams["evaluate_after_training"] and main_process:
        debug_files = brain.debug_batches * hparams.get("eval_batch_size", 16) \
            if brain.debug else None
        evaluate_after_training(hparams, brain.device, debug_files, not brain.noprogressbar)
    close_trackers(brain)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (HparamsError, UnsafeFileError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:  # Ctrl-C; during training RunInterrupted says where it resumes
        print(str(err) or "interrupted", file=sys.stderr)
        sys.exit(130)
