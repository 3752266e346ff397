"""Evaluation of a trained run on the VoxCeleb1 test sets (docs/study.md, 'Evaluation').

``evaluate_run(hparams, checkpoint="best")``:

1. loads the embedder weights of the run's best checkpoint (lowest ``val_eer``
   in the checkpoint meta: validations of training only, train.py never makes the
   untrained model of the step-0 validation a candidate) or its latest one
   (``checkpoint="last"``), under ``test_precision``;
2. extracts one embedding per unique file (whole utterance) of the requested
   test sets and of the validation set, in one batched pass
   (:mod:`lowres.scoring.batch_embedding`);
3. scores every trial by cosine similarity (:mod:`lowres.scoring.score_norm`) and
   computes EER, its threshold and minDCF at p_target 0.01 and 0.05
   (:mod:`lowres.scoring.metrics`);
3b. calibrates the cosine scores to log-likelihood ratios by logistic regression on the
   validation trials (never the test trials; :mod:`lowres.scoring.calibration`) and adds
   min Cllr, and with a calibration Cllr and the actual DCF at the Bayes threshold;
3c. with ``intervals`` (the default), the speaker-bootstrap interval of each of these
   metrics but the actual DCF (:mod:`lowres.scoring.bootstrap`, docs/intervals.md);
4. with ``post_process_scores`` also the same after AS-norm, with a cohort of
   per-speaker mean embeddings of the training set's full utterances
   (computed once per checkpoint and cached as ``cohort.pt`` beside the
   results; ``enroll_training_data`` alone computes and caches the cohort);
5. writes per-trial score files and, last, ``results.json`` into
   ``<output_folder>/eval/<checkpoint>/``, every file atomically.

``results.json`` and the folder's other files: :mod:`lowres.io.run_folder`.

``checkpoint="averaged"`` (with ``average_checkpoints: N`` > 0; beyond the study) tests the
mean of the embedder weights of the run's last N checkpoints of training, or its N of
lowest val_eer (``average_checkpoints_by: last | best``), written to
``eval/averaged/``; its results.json adds ``"averaged": {"by": .., "n": .., "checkpoints":
[{"name": .., "meta": ..}, ...]}`` (oldest first) and its ``checkpoint`` is the newest
of them.  Floating-point tensors are averaged; integer buffers (BatchNorm's
num_batches_tracked) are the newest checkpoint's.

A run that diverged is marked, never reported as the untrained model (results.json's
``diverged``).  The validation EER threshold is what ``lowres.scoring.verify`` uses to
call two recordings same or different.

hparams keys read: embedder, checkpointer, manifest_folder, train_csv,
valid_csv, val_trials, output_folder, post_process_scores,
enroll_training_data; optional: average_checkpoints (0), average_checkpoints_by
(last), test_precision (fp16: autocast on a GPU as the
study, fp32 elsewhere; or fp32), as_norm_variant (two_sided_top_k where a run's hparams
predate the key; the yaml's default is the study's one_sided_whole_cohort),
as_norm_top_k (300), eval_batch_size (16),
eval_max_batch_seconds (400), eval_num_workers (default: num_workers, else 0),
cohort_max_files_per_speaker (default: all files), calibration_prior (0.5: the
calibration objective is then Cllr), intervals (true), interval_level (0.95),
interval_draws (1000), interval_seed (0).

When ``best`` and ``last`` are the same checkpoint, the second evaluation
copies the first one's results instead of embedding everything again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from speechbrain.utils.checkpoints import Checkpoint

from lowres.io.atomic import atomic_path
from lowres.io.audio import SAMPLE_RATE
from lowres.io.lists import TEST_SETS, read_manifest, read_trials, test_set_files, test_set_names
from lowres.io.run_folder import (
    COHORT,
    eval_folder,
    read_diverged,
    read_results,
    scores_name,
    write_results,
)
from lowres.io.tensor_files import load_tensors
from lowres.scoring.batch_embedding import extract_embeddings
from lowres.scoring.calibration import fit_calibration
from lowres.scoring.checkpoints import (
    CHECKPOINTS,
    EvaluationError,
    load_averaged,
    load_checkpoint,
)
from lowres.scoring.eval_settings import (
    OLD_AS_NORM_VARIANT,
    as_norm_top_k,
    check_values,
    effective_test_precision,
    interval_settings,
    test_autocast,
)
from lowres.scoring.metrics import eer
from lowres.scoring.score_norm import (
    as_norm_scores,
    cosine_trial_scores,
    speaker_mean_cohort,
)
from lowres.scoring.trials import (
    debug_trials,
    embedded_trials,
    finite_or_none,
    trial_indices,
    trial_intervals,
    trial_metrics,
    write_scores,
)

logger = logging.getLogger(__name__)

__all__ = ["evaluate_after_training", "evaluate_run", "summary", "training_cohort"]


# ---------------------------------------------------------------------------- scoring


def _embed(embedder, files: pd.DataFrame, hparams: dict, device,
           progress: str | bool) -> torch.Tensor:
    from lowres.data.shards import eval_audio

    num_samples = np.round(files.duration.to_numpy(dtype=float) * SAMPLE_RATE).astype(np.int64)
    shards = eval_audio(hparams)  # data_format shards: the files from shard_folder
    with test_autocast(effective_test_precision(hparams, device)[0], device):
        return extract_embeddings(
            embedder, files.wav.tolist(), num_samples=num_samples,
            load=shards.load_audio if shards is not None else None,
            batch_size=int(hparams.get("eval_batch_size", 16)),
            max_batch_seconds=float(hparams.get("eval_max_batch_seconds", 400.0)),
            device=device, progress=progress,
            num_workers=int(hparams.get("eval_num_workers", hparams.get("num_workers", 0))),
        )


def training_cohort(hparams: dict, ckpt_name: str, cache: Path, device,
                    progress: bool = True) -> torch.Tensor:
    """Per-speaker mean embeddings of the training set (whole files), cached in ``cache``;
    ``progress``: a progress bar over its files.

    ``cohort_max_files_per_speaker`` (hparams, default all) caps the files per
    speaker (the first ones by ID) to bound the pass over a large training set.
    """
    train_csv = os.fspath(hparams["train_csv"])
    cap = hparams.get("cohort_max_files_per_speaker")
    key = {"checkpoint": ckpt_name, "train_csv": train_csv, "max_files_per_speaker": cap,
           "precision": effective_test_precision(hparams, device)[0]}
    if cache.is_file():
        stored = load_tensors(cache)
        if all(stored.get(k) == v for k, v in key.items()):
            logger.info("using cached AS-norm cohort %s", cache)
            return stored["means"]
    train = read_manifest(train_csv)
    if "spk_id" not in train.columns:
        raise EvaluationError(f"{train_csv} has no spk_id column")
    if cap is not None:
        train = train.sort_values("ID").groupby("spk_id", sort=False).head(int(cap))
    emb = _embed(hparams["embedder"], train, hparams, device,
                 progress and "cohort (train set)")
    speakers, means = speaker_mean_cohort(emb, train.spk_id.tolist())
    with atomic_path(cache) as tmp:
        torch.save({**key, "speakers": speakers, "means": means}, tmp)
    return means


def as_norm_settings(entry: dict) -> dict:
    """The AS-norm settings a test set's ``as_norm`` results entry was made with (an entry
    without ``variant`` predates the one-sided variant: two-sided top-k)."""
    return {"variant": entry.get("variant", OLD_AS_NORM_VARIANT), "top_k": entry.get("top_k"),
            "cohort_max_files_per_speaker": entry.get("cohort_max_files_per_speaker")}


def _reuse_other_checkpoint(hparams, checkpoint, ckpt_name, test_sets, validation, post, as_norm,
                            device):
    """When best and last are the same checkpoint, copy the other one's finished results.

    Only if they cover the requested test sets (and validation, and AS-norm with the
    same ``as_norm`` settings when asked for) on the same manifests; returns the new
    results or None.
    """
    other = "last" if checkpoint == "best" else "best"
    src_dir = eval_folder(hparams["output_folder"], other)
    src = read_results(hparams["output_folder"], other)
    if src is None:
        return None
    sets = src.get("test_sets") or {}
    ok = (src.get("checkpoint", {}).get("name") == ckpt_name
          and src.get("test_precision") == effective_test_precision(hparams, device)[0]
          and src.get("manifest_folder") == os.fspath(hparams["manifest_folder"])
          and all(s in sets for s in test_sets)
          and (not validation or "validation" in src)
          and (not validation or (src.get("calibration") or {}).get("prior")
               == float(hparams.get("calibration_prior", 0.5)))
          and (not post or all(
              as_norm_settings(sets[s].get("as_norm", {})) == as_norm for s in test_sets))
          and all(_interval_settings_of(sets[s]) == interval_settings(hparams)
                  for s in test_sets))
    if not ok:
        return None
    out = eval_folder(hparams["output_folder"], checkpoint)
    results = {**src, "checkpoint": {**src["checkpoint"], "which": checkpoint},
               "reused_from": other, "test_sets": {}}
    if not validation:
        results.pop("validation", None)
    if not post and "calibration" in results:
        results["calibration"] = {k: v for k, v in results["calibration"].items() if k != "as_norm"}
    names = [COHORT] if (src_dir / COHORT).is_file() else []
    for s in test_sets:
        entry = dict(sets[s])
        if not post:
            entry.pop("as_norm", None)
        names += [entry["scores"]] + ([entry["as_norm"]["scores"]] if "as_norm" in entry else [])
        results["test_sets"][s] = entry
    for name in names:
        with atomic_path(out / name) as tmp:
            shutil.copyfile(src_dir / name, tmp)
    write_results(hparams["output_folder"], checkpoint, results)
    logger.info("%s checkpoint is the %s one (%s): results copied", checkpoint, other, ckpt_name)
    return results


def _interval_settings_of(entry: dict) -> dict | None:
    """The interval settings a test set's results entry was made with (None: no intervals)."""
    intervals = entry.get("intervals")
    return {k: intervals[k] for k in ("level", "draws", "seed")} if intervals else None


def evaluate_run(
    hparams: dict,
    checkpoint: str = "best",
    test_sets: Sequence[str] | Iterable[str] = TEST_SETS,
    device: str | torch.device | None = None,
    validation: bool = True,
    run_opts=None,
    debug_files: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Evaluate one run folder's checkpoint; writes and returns ``results.json``'s content.

    ``device``: default ``run_opts.device`` (SpeechBrain's run options, as
    train.py has them), else CUDA when available, else CPU.  Under DDP call it
    on the main process only.  ``progress`` (progress bars over the files embedded):
    default as a Brain takes SpeechBrain's ``noprogressbar``, from ``run_opts`` (the
    command line) over ``hparams``.

    ``debug_files`` (SpeechBrain's ``--debug`` only): embed about that many files of each
    list (those of its first target and non-target trials, :func:`debug_trials`) and score
    only the trials whose files were embedded; the results go to
    ``eval/debug/<checkpoint>/`` with a ``debug`` entry, never where a run's results are.
    """
    test_sets = test_set_names(test_sets)
    check_values({**hparams, "test_sets": test_sets})
    device = _device(device, run_opts)
    if progress is None:
        progress = not _noprogressbar(hparams, run_opts)
    precision, note = effective_test_precision(hparams, device)
    if note:
        logger.warning(note)
    where = checkpoint if debug_files is None else f"debug/{checkpoint}"
    out = eval_folder(hparams["output_folder"], where)
    diverged = read_diverged(hparams["output_folder"])
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    latest = _trained_without_finite_validation(hparams, checkpoint)
    if latest is not None:
        return _diverged_results(hparams, checkpoint, None, precision, diverged or {
            "step": latest.meta.get("step"),
            "reason": "no validation of training had a finite EER"}, where)
    ckpt, used, ckpt_name = _load_weights(hparams, checkpoint)
    post = bool(hparams.get("post_process_scores", False))
    as_norm = _as_norm_asked(hparams)
    if used is None and debug_files is None:
        reused = _reuse_other_checkpoint(hparams, checkpoint, ckpt_name, test_sets, validation,
                                         post, as_norm, device)
        if reused is not None:
            return reused
    embedder = hparams["embedder"].to(device)

    lists = _trial_lists(hparams, test_sets, validation)
    files = pd.concat([df[["ID", "duration", "wav"]] for df, _ in lists.values()])
    files = files.drop_duplicates("ID").reset_index(drop=True)  # every file once
    debug = None
    if debug_files is not None:
        lists, files, debug = _debug_subset(lists, files, debug_files)
    index_of = dict(zip(files.ID, range(len(files)), strict=True))
    indices = {name: trial_indices(trials, index_of, name) for name, (_, trials) in lists.items()}
    t0 = time.perf_counter()
    emb = _embed(embedder, files, hparams, device, progress and f"embeddings ({checkpoint})")
    embedding_seconds = time.perf_counter() - t0
    nonfinite = int((~torch.isfinite(emb).all(dim=1)).sum())
    if nonfinite:
        return _diverged_results(hparams, checkpoint, ckpt, precision, {
            "step": ckpt.meta.get("step"),
            "reason": f"{nonfinite} of {len(files)} embeddings are not finite"}, where)
    cohort = None
    if post or hparams.get("enroll_training_data", False):
        cohort = training_cohort(hparams, ckpt_name, out / COHORT, device, progress)
    scored = _ScoredTrials(emb, lists, indices, cohort if post else None, as_norm)

    results: dict = {
        "checkpoint": {"which": checkpoint, "name": ckpt.path.name, "meta": dict(ckpt.meta)},
        "manifest_folder": os.fspath(hparams["manifest_folder"]),
        "test_sets": {},
        "embedding_seconds": round(embedding_seconds, 2),
        "files_embedded": len(files),
        "test_precision": precision,
        "diverged": diverged or False,
        **({"debug": debug} if debug else {}),
    }
    if used is not None:
        results["averaged"] = {
            "by": hparams.get("average_checkpoints_by", "last"), "n": len(used),
            "checkpoints": [{"name": c.path.name, "meta": dict(c.meta)} for c in used]}
    calibrations = (None, None)
    if validation:
        results["validation"], results["calibration"], calibrations = _calibrate(
            scored, float(hparams.get("calibration_prior", 0.5)))
    intervals = interval_settings(hparams)
    for name in test_sets:
        entry = results["test_sets"][name] = _test_set_entry(scored, name, calibrations, out,
                                                             intervals)
        logger.info("%s %s: EER %.2f%% over %d trials", checkpoint, name, 100 * entry["eer"],
                    entry["n_trials"])
    write_results(hparams["output_folder"], where, results)
    return results


def evaluate_after_training(hparams: dict, device: str | torch.device,
                            debug_files: int | None = None, progress: bool = True) -> None:
    """train.py's test of a trained run: the last checkpoint (unless evaluate_last is false),
    the averaged one (average_checkpoints) and the best, each by :func:`evaluate_run`
    (``progress``: its progress bars, off with the Brain's ``noprogressbar``).

    ``eval/best/results.json`` is written last: it marks the run as finished.  With
    ``--debug`` (``debug_files``): a few files of each list only, into ``eval/debug/``.
    """
    # eval/best last; evaluate_run reads test_sets in every form a user types
    which_ones = (*(["last"] if hparams.get("evaluate_last", True) else []),
                  *(["averaged"] if hparams["average_checkpoints"] else []), "best")
    for which in which_ones:
        evaluate_run(hparams, checkpoint=which, test_sets=hparams["test_sets"], device=device,
                     debug_files=debug_files, progress=progress)


def _device(device: str | torch.device | None, run_opts) -> str | torch.device:
    """`device`, else SpeechBrain's ``run_opts.device``, else CUDA when available, else CPU."""
    if device is None and run_opts is not None:
        device = (run_opts.get("device") if isinstance(run_opts, dict)
                  else getattr(run_opts, "device", None))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _noprogressbar(hparams: dict, run_opts) -> bool:
    """SpeechBrain's ``noprogressbar`` with a Brain's priority: given on the command line
    (``run_opts``, a RunOptions or a dict), else in ``hparams``, else False."""
    if isinstance(run_opts, dict):
        given = "noprogressbar" in run_opts
    else:
        given = run_opts is not None and "noprogressbar" in run_opts.overridden_args
    return bool(run_opts["noprogressbar"] if given else hparams.get("noprogressbar", False))


def _trained_without_finite_validation(hparams: dict, checkpoint: str) -> Checkpoint | None:
    """The latest checkpoint when `checkpoint` is chosen by val_eer and no validation of
    training had a finite one (the run diverged: nothing to test); else None."""
    by_best = checkpoint == "best" or (checkpoint == "averaged" and hparams.get(
        "average_checkpoints_by", "last") == "best")
    checkpointer = hparams["checkpointer"]
    if by_best and checkpointer.find_checkpoint(min_key="val_eer") is None:
        return checkpointer.find_checkpoint()
    return None


def _load_weights(hparams: dict,
                  checkpoint: str) -> tuple[Checkpoint, list[Checkpoint] | None, str]:
    """Load the embedder weights to test: returns the checkpoint results.json names, the
    averaged ones (None unless `checkpoint` is ``averaged``) and the name that keys the
    cohort cache and the reuse of the other checkpoint's results (the averaged weights are
    no checkpoint's: a key of their own, never reused)."""
    if checkpoint != "averaged":
        ckpt = load_checkpoint(hparams, checkpoint)
        return ckpt, None, ckpt.path.name
    used = load_averaged(hparams)
    return used[-1], used, "averaged:" + ",".join(c.path.name for c in used)


def _as_norm_asked(hparams: dict) -> dict:
    """The AS-norm settings of the run's hparams, as :func:`as_norm_settings` reads them back."""
    return {"variant": hparams.get("as_norm_variant", OLD_AS_NORM_VARIANT),
            "top_k": as_norm_top_k(hparams),
            "cohort_max_files_per_speaker": hparams.get("cohort_max_files_per_speaker")}


def _trial_lists(hparams: dict, test_sets: Sequence[str],
                 validation: bool) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """(manifest, trials) of each test set, and of the validation set when asked for."""
    lists = {}
    for name in test_sets:
        csv, trials = test_set_files(hparams["manifest_folder"], name)
        lists[name] = (read_manifest(csv), read_trials(trials))
    if validation:
        lists["validation"] = (read_manifest(hparams["valid_csv"]),
                               read_trials(hparams["val_trials"]))
    return lists


def _debug_subset(lists: dict, files: pd.DataFrame, debug_files: int):
    """SpeechBrain's ``--debug``: about `debug_files` files (those of each list's first
    target and non-target trials) and the trials they make; returns the lists, the files
    and results.json's ``debug`` entry."""
    chosen = [debug_trials(trials, max(2, debug_files // len(lists)))
              for _, trials in lists.values()]
    keep = set().union(*(set(t.id1) | set(t.id2) for t in chosen))
    files = files[files.ID.isin(keep)].reset_index(drop=True)
    debug = {"files_embedded": len(files), "trials_scored": {}}
    kept = {}
    for name, (df, trials) in lists.items():
        kept[name] = (df, embedded_trials(trials, keep, name))
        debug["trials_scored"][name] = [len(kept[name][1]), len(trials)]
    return kept, files, debug


@dataclass(frozen=True)
class _ScoredTrials:
    """The trials of every list scored on the embeddings: cosine, and with a cohort (the
    run's post_process_scores) also after AS-norm."""

    emb: torch.Tensor
    lists: dict[str, tuple[pd.DataFrame, pd.DataFrame]]  # name -> (manifest, trials)
    indices: dict[str, tuple]  # name -> the rows of emb of each trial's two sides
    cohort: torch.Tensor | None
    as_norm: dict  # _as_norm_asked

    def trials(self, name: str) -> pd.DataFrame:
        return self.lists[name][1]

    def cosine(self, name: str) -> np.ndarray:
        return cosine_trial_scores(self.emb, *self.indices[name]).numpy()

    def normed(self, name: str) -> np.ndarray:
        left, right = self.indices[name]
        return as_norm_scores(self.emb, left, right, self.cohort, self.as_norm["top_k"],
                              self.as_norm["variant"]).numpy()


def _calibrate(scored: _ScoredTrials, prior: float):
    """results.json's ``validation`` and ``calibration`` entries, and the calibrations of the
    cosine scores and (with a cohort) of the AS-normed ones, fitted on the validation trials."""
    labels = scored.trials("validation").label.to_numpy()
    scores = scored.cosine("validation")
    res = eer(scores, labels)
    validation = {"n_trials": int(len(labels)), "eer": res.eer,
                  "eer_threshold": finite_or_none(res.threshold)}
    calibration = fit_calibration(scores, labels, prior)
    entry = {**calibration._asdict(), "prior": prior, "trained_on": "validation",
             "n_trials": int(len(labels))}
    as_norm_calibration = None
    if scored.cohort is not None:
        as_norm_calibration = fit_calibration(scored.normed("validation"), labels, prior)
        entry["as_norm"] = as_norm_calibration._asdict()
    return validation, entry, (calibration, as_norm_calibration)


def _test_set_entry(scored: _ScoredTrials, name: str, calibrations: tuple, out: Path,
                    intervals: dict | None) -> dict:
    """One test set's metrics (and after AS-norm, with a cohort), with their intervals when
    ``intervals`` has the settings; writes its score files."""
    calibration, as_norm_calibration = calibrations
    trials = scored.trials(name)
    scores = scored.cosine(name)
    entry = _metrics_entry(scores, trials, calibration, intervals, name)
    entry["scores"] = scores_name(name)
    write_scores(out / entry["scores"], trials, scores)
    if scored.cohort is not None:
        normed = scored.normed(name)
        entry["as_norm"] = _metrics_entry(normed, trials, as_norm_calibration, intervals,
                                          f"{name} (AS-norm)")
        entry["as_norm"].update(scores=scores_name(name, as_norm=True), **scored.as_norm,
                                cohort_size=int(scored.cohort.shape[0]))
        write_scores(out / entry["as_norm"]["scores"], trials, normed)
    return entry


def _metrics_entry(scores: np.ndarray, trials: pd.DataFrame, calibration, intervals: dict | None,
                   name: str) -> dict:
    """:func:`trial_metrics`, and with ``intervals`` their intervals (``intervals``)."""
    entry = trial_metrics(scores, trials.label.to_numpy(), calibration)
    if intervals is not None:
        found = trial_intervals(scores, trials, calibration, intervals, name)
        if found is not None:
            entry["intervals"] = found
    return entry


def _diverged_results(hparams, checkpoint, ckpt, precision, diverged: dict,
                      where: str) -> dict:
    """results.json of a run that diverged with nothing to test: no EER, never the
    untrained model's (``ckpt`` None: no validation had a finite EER)."""
    results = {
        "checkpoint": {"which": checkpoint, "name": ckpt.path.name if ckpt else None,
                       "meta": dict(ckpt.meta) if ckpt else None},
        "manifest_folder": os.fspath(hparams["manifest_folder"]),
        "test_sets": {},
        "test_precision": precision,
        "diverged": diverged,
    }
    logger.warning("%s: diverged at step %s (%s): nothing to test", checkpoint,
                   diverged.get("step"), diverged.get("reason"))
    write_results(hparams["output_folder"], where, results)
    return results


def summary(results: dict) -> str:
    """One line per test set, for logs and the CLI."""
    lines = []
    if results.get("diverged"):
        d = results["diverged"]
        lines.append(f"diverged at step {d.get('step')}: {d.get('reason')}")
    for name, r in results["test_sets"].items():
        line = (f"{name:>8}: EER {100 * r['eer']:6.2f}%  minDCF(0.01) {r['min_dcf_0.01']:.4f}  "
                f"minDCF(0.05) {r['min_dcf_0.05']:.4f}  ({r['n_trials']} trials)")
        if "cllr" in r:
            line += f"  Cllr {r['cllr']:.3f} (min {r['min_cllr']:.3f})"
        if "as_norm" in r:
            line += f"  | AS-norm EER {100 * r['as_norm']['eer']:6.2f}%"
        lines.append(line)
    return "\n".join(lines)

