#!/usr/bin/env python3
r"""Evaluate a trained run on VoxCeleb1-O/E/H (EER, minDCF, optional AS-norm).

    cd recipes/VoxCeleb
    python eval.py hparams/ecapa_tiny_few.yaml --output_folder OUT \
        [--checkpoint best|last] [--test_sets original,extended,hard] [--device cpu] \
        [--post_process_scores true] [--test_precision fp16|fp32] [--noprogressbar] \
        [--key value ...]

Writes OUT/eval/<checkpoint>/results.json and per-trial score files (see
lowres.scoring.evaluation); with SpeechBrain's ``--debug [--debug_batches N]`` only N
batches of files of each list are embedded and only their trials scored (logged, and in
results.json's ``debug``), into OUT/eval/debug/<checkpoint>/ (a debug training run
needs ``--debug_persistently`` to keep its checkpoints for it).  The hparams come from
the run's own resolved
``OUT/hyperparams.yaml`` (written by train.py, so the model is rebuilt exactly
as trained, whatever overrides training had); the yaml given on the command
line is only used for a run folder without one.  ``--key value`` overrides
apply on top either way (e.g. ``--post_process_scores true``).  --test_sets
defaults to the yaml's ``test_sets``; ``test_precision`` fp16 (the default, as the
study) embeds under fp16 autocast on a GPU and in fp32 elsewhere (logged).  A run
folder that moved, or named from another directory than training's, still works: every
path of the run folder is taken from OUT, never from the output_folder stored in its
hyperparams.yaml, and only OUT/eval/ is written; a folder without OUT/save is refused
before anything is created.  Manifest paths are those of training: if the data moved,
override ``--manifest_folder``, ``--train_csv``, ``--valid_csv`` and ``--val_trials``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import speechbrain as sb

from lowres.io.device import check_device
from lowres.io.hparams import HparamsError, load_hparams, overrides_dict, plain_values
from lowres.io.lists import TEST_SETS, test_set_names
from lowres.io.run_folder import hyperparams_path, save_folder
from lowres.io.tensor_files import UnsafeFileError
from lowres.scoring.checkpoints import CHECKPOINTS, EvaluationError, load_run_hparams
from lowres.scoring.evaluation import evaluate_run, summary
from prepare.errors import USER_ERRORS

logger = logging.getLogger(__name__)


def parse(argv):
    """Our options, then SpeechBrain's (``--device``, ``--key value`` overrides)."""
    ours = argparse.ArgumentParser(add_help=False)
    ours.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
    ours.add_argument("--test_sets", default=None,
                      help="subset of " + ",".join(TEST_SETS) + " (original, original,hard or "
                      "[original, hard]; default: the yaml's test_sets)")
    args, rest = ours.parse_known_args(argv)
    if any(a in ("-h", "--help") for a in rest):
        print(__doc__)
        sys.exit(0)
    hparams_file, run_opts, overrides = sb.parse_arguments(rest)
    check_device(run_opts.device)
    test_sets = None if args.test_sets is None else test_set_names(args.test_sets)
    return args.checkpoint, test_sets, hparams_file, run_opts, overrides_dict(overrides)


def hparams_for(hparams_file, overrides: dict) -> dict:
    """The run's resolved hyperparams.yaml if OUT has one, else ``hparams_file``; + overrides.

    A run folder without checkpoints is refused before anything is built: building the
    hparams makes the checkpointer's folder, and nothing is created for a missing run."""
    out = overrides.get("output_folder")
    if out and hyperparams_path(out).is_file():
        logger.info("hparams from the run folder: %s", hyperparams_path(out))
        return load_run_hparams(out, overrides)
    if out is None:
        logger.warning("no --output_folder given: evaluating the yaml's default run folder")
        out = plain_values(hparams_file, overrides)["output_folder"]
    if not save_folder(out).is_dir():
        raise EvaluationError(f"no run to evaluate: {save_folder(out)} not found (train it "
                              f"first: train.py ... --output_folder {out})")
    return load_hparams(hparams_file, overrides)


def main(argv) -> dict:
    checkpoint, test_sets, hparams_file, run_opts, overrides = parse(argv)
    hparams = hparams_for(hparams_file, overrides)
    if test_sets is None:
        test_sets = hparams.get("test_sets", TEST_SETS)
    # SpeechBrain's --debug: a few batches of files per list, into OUT/eval/debug/
    debug_files = run_opts.debug_batches * int(hparams.get("eval_batch_size", 16)) \
        if run_opts.debug else None
    results = evaluate_run(hparams, checkpoint, test_sets, run_opts=run_opts,
                           debug_files=debug_files)
    print(summary(results))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(sys.argv[1:])
    except (HparamsError, EvaluationError, UnsafeFileError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
