"""The run folder: the one contract that training, evaluation, export, the grids and the
results share. Every path inside it, and every file of it that more than one part reads,
is defined here and nowhere else.

A run folder (train.py's ``output_folder``) holds::

    hyperparams.yaml        the resolved hparams, standalone: it reloads as the run's hparams
    command.txt             every invocation (time, cwd, world size, the command line)
    train_log.txt           SpeechBrain's train logger: validation lines (step, lr, train and
                            valid loss / accuracy / EER%) and train lines every log_interval
    log.txt, env.log        SpeechBrain's log and environment record
    <script>.py             a copy of the recipe script that started the run (train.py,
                            pretrain.py), as of its latest invocation
    save/                   checkpoints (SpeechBrain's Checkpointer) and label_encoder.txt
                            (each checkpoint's rng.ckpt: rank 0's RNG state; rng_rank<R>.ckpt:
                            DDP rank R's)
    diverged.json           {"step", "reason"}: training stopped at a non-finite loss
    parameters.json         {"trainable", "total", "ssl_adaptation"}: the model's parameters
                            (embedder + classifier) and those that train (with the wav2vec2
                            freeze schedule: once the backbone is unfrozen; none of a
                            backbone frozen throughout); ssl_adaptation null for the
                            non-SSL models; written when training starts
    eval/<checkpoint>/      per tested checkpoint (best, last, averaged; debug/<checkpoint> for
                            a debug run): score files, cohort.pt (the AS-norm cohort) and, written
                            last, results.json
    eval/best/results.json  its existence marks a finished run

``results.json`` (EERs are fractions: 0.05 = 5 %)::

    {
      "checkpoint": {"which": "best", "name": "CKPT+...", "meta": {"val_eer": .., "step": ..}},
      "validation": {"n_trials": .., "eer": .., "eer_threshold": ..},   # whole utterances
      "calibration": {"scale": .., "offset": .., "prior": 0.5,   # llr = scale * score + offset
                      "trained_on": "validation", "n_trials": ..,
                      "as_norm": {"scale": .., "offset": ..}},   # if post_process_scores
      "test_sets": {
        "original": {"n_trials": .., "eer": .., "eer_threshold": ..,
                     "min_dcf_0.01": .., "min_dcf_0.05": .., "min_cllr": ..,
                     "cllr": .., "act_dcf_0.01": .., "act_dcf_0.05": ..,  # if calibrated
                     "scores": "scores_original.txt",
                     "intervals": {"method": "speaker_bootstrap", "level": 0.95,  # if intervals
                                   "draws": 1000, "seed": 0, "n_speakers": 40,
                                   "degenerate_draws": 0, "eer": [low, high],
                                   "min_dcf_0.01": [..], "min_dcf_0.05": [..],
                                   "min_cllr": [..], "cllr": [..]},  # cllr if calibrated
                     "as_norm": {same keys, "scores": "scores_original_as_norm.txt",
                                 "variant": "one_sided_whole_cohort", "top_k": null,
                                 "cohort_size": ..,  # top_k: 300 with two_sided_top_k
                                 "cohort_max_files_per_speaker": null}},  # if post_process_scores
        ...
      },
      "embedding_seconds": .., "files_embedded": .., "manifest_folder": "..",
      "test_precision": "fp16",   # what the embeddings ran in: fp16 | bf16 (GPU autocast) | fp32
      "diverged": false,          # or {"step": .., "reason": ".."}, see below
      "reused_from": "last",      # only when best and last are one checkpoint (results copied)
      "averaged": {"by": .., "n": .., "checkpoints": [{"name": .., "meta": ..}, ...]},
                                  # only eval/averaged: the checkpoints averaged, oldest first
      "debug": {...}              # only a debug run's
    }

A run that diverged is never reported as the untrained model: ``diverged`` holds training's
record (``diverged.json``) when there is one; when no validation of training had a finite
EER (no ``best``) or a checkpoint's embeddings are not finite, ``test_sets`` is empty and
``diverged`` says why. A threshold that is not finite (degenerate score lists) is null.
Without validation trials there is no calibration: the test sets then have min Cllr but no
Cllr / actual DCF. Cllr is in bits (1: a system that always says LLR 0); act_dcf is
normalised like min_dcf. ``intervals`` (hparams ``intervals``, ``interval_level``,
``interval_draws``, ``interval_seed``) holds the percentile interval of each metric, in its
unit, over ``draws`` resamplings of the list's ``n_speakers`` test speakers
(:mod:`lowres.scoring.bootstrap`, docs/intervals.md); ``degenerate_draws`` drew no target or
no non-target trial and are left out. A list of fewer than two speakers (a debug run's) has
none. Score files hold one trial per line, ``label score path1 path2``
(paths as in the official list).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from lowres.io.atomic import read_json, write_json, write_text

HYPERPARAMS = "hyperparams.yaml"
COMMAND = "command.txt"
TRAIN_LOG = "train_log.txt"
SAVE = "save"
LABEL_ENCODER = "label_encoder.txt"
DIVERGED = "diverged.json"
PARAMETERS = "parameters.json"
EVAL = "eval"
RESULTS = "results.json"
COHORT = "cohort.pt"
# a folder holding any of these is a run folder (lowres.results walks a tree for them)
RUN_MARKERS = (HYPERPARAMS, TRAIN_LOG, EVAL)

Folder = str | os.PathLike


def hyperparams_path(run: Folder) -> Path:
    return Path(run) / HYPERPARAMS


def command_path(run: Folder) -> Path:
    return Path(run) / COMMAND


def train_log_path(run: Folder) -> Path:
    return Path(run) / TRAIN_LOG


def save_folder(run: Folder) -> Path:
    """The checkpoints (SpeechBrain's Checkpointer) and the label encoder."""
    return Path(run) / SAVE


def label_encoder_path(run: Folder) -> Path:
    return save_folder(run) / LABEL_ENCODER


def rank_rng_path(rng_file: Folder, rank: int) -> Path:
    """Where DDP rank ``rank`` keeps its RNG state in the checkpoint whose RNG file
    SpeechBrain names ``rng_file`` (``<checkpoint>/rng.ckpt``): that file for rank 0,
    ``rng_rank<R>.ckpt`` beside it for the others."""
    path = Path(rng_file)
    return path if rank == 0 else path.with_name(f"{path.stem}_rank{rank}{path.suffix}")


def eval_folder(run: Folder, checkpoint: str) -> Path:
    """``<run>/eval/<checkpoint>`` (``checkpoint`` may be ``debug/<checkpoint>``)."""
    return Path(run) / EVAL / checkpoint


def results_path(run: Folder, checkpoint: str = "best") -> Path:
    """``<run>/eval/<checkpoint>/results.json``: written last, so it exists only complete."""
    return eval_folder(run, checkpoint) / RESULTS


def scores_name(test_set: str, as_norm: bool = False) -> str:
    """The score file of a test set inside an eval folder (results.json names it too)."""
    return f"scores_{test_set}{'_as_norm' if as_norm else ''}.txt"


def is_run_folder(folder: Folder) -> bool:
    return any((Path(folder) / marker).exists() for marker in RUN_MARKERS)


def is_finished(run: Folder) -> bool:
    """A finished run: its best checkpoint has been evaluated."""
    return results_path(run).is_file()


def read_results(run: Folder, checkpoint: str = "best") -> dict | None:
    """results.json of ``checkpoint``, or None when it is missing (not evaluated) or
    unreadable."""
    return read_json(results_path(run, checkpoint))


def write_results(run: Folder, checkpoint: str, results: dict) -> None:
    """Write results.json atomically: after the score files it names."""
    write_json(results_path(run, checkpoint), results)


def mark_diverged(run: Folder, step: int, reason: str) -> None:
    """Record that training stopped at ``step`` because it diverged."""
    write_json(Path(run) / DIVERGED, {"step": int(step), "reason": reason})


def read_diverged(run: Folder) -> dict | None:
    """``{"step", "reason"}`` of a run whose training diverged, else None."""
    return read_json(Path(run) / DIVERGED)


def diverged_path(run: Folder) -> Path:
    return Path(run) / DIVERGED


def parameters_path(run: Folder) -> Path:
    return Path(run) / PARAMETERS


def write_parameters(run: Folder, trainable: int, total: int,
                     ssl_adaptation: str | None) -> None:
    """Record how many of the model's parameters train (results tables read it)."""
    write_json(parameters_path(run), {"trainable": int(trainable), "total": int(total),
                                      "ssl_adaptation": ssl_adaptation})


def read_parameters(run: Folder) -> dict | None:
    """``{"trainable", "total", "ssl_adaptation"}`` of a run, or None (not written:
    training never started, or a run of an earlier lowres)."""
    return read_json(parameters_path(run))


def write_record(run: Folder, yaml_text: str, source: str, world_size: int = 1) -> None:
    """Write the run's resolved ``hyperparams.yaml`` (``source`` says what it was resolved
    from), append this process's command line to ``command.txt`` and copy the script it
    runs (``sys.argv[0]``, when it is a Python file) into the folder."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    write_text(hyperparams_path(run), f"# Generated {stamp} {source}\n{yaml_text}")
    script = Path(sys.argv[0])
    if script.suffix == ".py" and script.is_file():
        write_text(Path(run) / script.name, script.read_text(encoding="utf-8"))
    with open(command_path(run), "a", encoding="utf-8") as f:
        f.write(f"# {stamp} cwd={os.getcwd()} world_size={world_size}\n"
                f"{shlex.join([sys.executable, *sys.argv])}\n")
