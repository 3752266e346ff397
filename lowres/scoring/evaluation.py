"""Evaluation of a trained run on the VoxCeleb1 test sets (docs/study.md, 'Evaluation').

``evaluate_run(hparams, checkpoint="best")``:

1. loads the embedder weights of the run's best checkpoint (lowest ``val_eer``
   in the checkpoint meta: validations of training only, train.py never makes the
   untrained model of the step-0 validation a candidate) or its latest one
   (``checkpoint="last"``), under ``test_precision``;
2. extracts one embedding per unique file (whole utterance) of the requested
   test sets and of the validation set, in one batched pass
   (:mod:`lowres.scoring.embeddings`);
3. scores every trial by cosine similarity (:mod:`lowres.scoring.score_norm`) and
   computes EER, its threshold and minDCF at p_target 0.01 and 0.05
   (:mod:`lowres.scoring.metrics`);
3b. calibrates the cosine scores to log-likelihood ratios by logistic regression on the
   validation trials (never the test trials; :mod:`lowres.scoring.calibration`) and adds
   min Cllr, and with a calibration Cllr and the actual DCF at the Bayes threshold;
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
calibration objective is then Cllr).

When ``best`` and ``last`` are the same checkpoint, the second evaluation
copies the first one's results instead of embedding everything again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from speechbrain.utils.checkpoints import (
    Checkpoint,
    Checkpointer,
    average_checkpoints,
    average_state_dicts,
)

from lowres.io.atomic import atomic_path
from lowres.io.audio import SAMPLE_RATE
from lowres.io.hparams import invalid_hparam
from lowres.io.lists import TEST_SETS, read_manifest, read_trials, test_set_files, test_set_names
from lowres.io.run_folder import (
    COHORT,
    eval_folder,
    hyperparams_path,
    read_diverged,
    read_results,
    save_folder,
    scores_name,
    write_results,
)
from lowres.io.tensor_files import load_tensors, safe_recovery
from lowres.scoring.calibration import Calibration, act_dcf, cllr, fit_calibration, min_cllr
from lowres.scoring.embeddings import extract_embeddings
from lowres.scoring.metrics import eer, min_dcf
from lowres.scoring.score_norm import (
    AS_NORM_VARIANTS,
    as_norm_scores,
    cosine_trial_scores,
    speaker_mean_cohort,
)
from lowres.scoring.trials import debug_trials, embedded_trials, trial_indices

logger = logging.getLogger(__name__)

__all__ = ["TEST_PRECISIONS", "EvaluationError", "evaluate_run", "load_checkpoint",
           "load_run_hparams", "check_values", "precision_on", "test_autocast",
           "load_averaged", "read_scores", "summary", "trial_metrics", "training_cohort",
           "write_scores"]

CHECKPOINTS = ("best", "last", "averaged")
AVERAGE_BY = ("last", "best")
DEFAULT_TOP_K = 300
OLD_AS_NORM_VARIANT = "two_sided_top_k"  # the only one before as_norm_variant existed
TEST_PRECISIONS = ("fp16", "fp32")


class EvaluationError(RuntimeError):
    """Something the evaluation needs is missing; the message names it."""


# ---------------------------------------------------------------------------- hparams


def check_values(values: Mapping) -> None:
    """Raise HparamsError for the first invalid evaluation setting of ``values``.

    train.py calls it before its first training step (so a long run never fails at its
    end for a value it could have refused at its start), eval.py and evaluate_run too.
    """

    def one_of(key, choices, default):
        if values.get(key, default) not in choices:
            raise invalid_hparam(key, values.get(key), f"must be one of {', '.join(choices)}")

    test_set_names(values.get("test_sets"))
    one_of("test_precision", TEST_PRECISIONS, "fp16")
    for key in ("post_process_scores", "enroll_training_data"):
        if not isinstance(values.get(key, False), bool):
            raise invalid_hparam(key, values[key], "must be true or false")
    one_of("as_norm_variant", AS_NORM_VARIANTS, OLD_AS_NORM_VARIANT)
    one_of("average_checkpoints_by", AVERAGE_BY, "last")
    for key, minimum, optional in (("as_norm_top_k", 1, False), ("eval_batch_size", 1, False),
                                   ("average_checkpoints", 0, False),
                                   ("eval_num_workers", 0, False),
                                   ("cohort_max_files_per_speaker", 1, True)):
        v = values.get(key)
        if key in values and not (optional and v is None) and (
                isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise invalid_hparam(key, v, f"must be an integer >= {minimum}"
                                 + (" or null" if optional else ""))
    v = values.get("eval_max_batch_seconds", 1.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise invalid_hparam("eval_max_batch_seconds", v, "must be a positive number")


def precision_on(precision: str, device, key: str = "test_precision") -> tuple[str, str]:
    """What ``precision`` (the value of hparam ``key``) runs in on ``device``, and a note
    when it falls back: fp16 (autocast) needs a GPU, elsewhere it is fp32."""
    if precision == "fp16" and torch.device(device).type != "cuda":
        return "fp32", f"{key} fp16 needs a GPU: fp32 on {device} instead"
    return precision, ""


def test_autocast(precision: str, device):
    """Autocast context of the test embeddings: fp16 on a GPU (as the study tested), else
    none (fp32; also what fp16 falls back to off a GPU, see :func:`precision_on`)."""
    if precision_on(precision, device)[0] == "fp16":
        return torch.autocast(torch.device(device).type, dtype=torch.float16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------- run folder


def load_run_hparams(output_folder: str | os.PathLike, overrides: dict | None = None) -> dict:
    """Rebuild a run's hparams from its resolved ``<output_folder>/hyperparams.yaml``.

    ``overrides`` (top-level keys) apply on top.  The run folder may have moved
    since training: ``output_folder`` is set to where it is now and the
    checkpointer is pointed at the run folder's ``save`` if it names another place.
    """
    from lowres.io.hparams import load_hparams

    out = Path(output_folder)
    run_yaml = hyperparams_path(out)
    if not run_yaml.is_file():
        raise EvaluationError(f"{run_yaml} not found: is {out} a run folder written by train.py?")
    hparams = load_hparams(run_yaml, {**(overrides or {}), "output_folder": str(out)})
    if Path(hparams["checkpointer"].checkpoints_dir).resolve() != save_folder(out).resolve():
        hparams["checkpointer"] = Checkpointer(save_folder(out), {})
    return hparams


# ---------------------------------------------------------------------------- checkpoint


def load_checkpoint(hparams: dict, checkpoint: str = "best"):
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
    state = average_checkpoints(
        ckpts, "embedder", averager=average_weights,
        parameter_loader=functools.partial(torch.load, weights_only=True))
    hparams["embedder"].load_state_dict(state)
    logger.info("loaded the mean of %d checkpoints (%s): %s", len(ckpts), by,
                ", ".join(c.path.name for c in ckpts))
    return ckpts


# ---------------------------------------------------------------------------- scoring


def _finite_or_none(x: float):
    return float(x) if math.isfinite(x) else None


def trial_metrics(scores, labels, calibration: Calibration | None = None) -> dict:
    """n_trials, eer, eer_threshold, min_dcf_0.01, min_dcf_0.05, min_cllr of one score list;
    with a ``calibration`` also cllr, act_dcf_0.01 and act_dcf_0.05 of its LLRs."""
    res = eer(scores, labels)
    out = {
        "n_trials": int(len(labels)),
        "eer": res.eer,
        "eer_threshold": _finite_or_none(res.threshold),
        "min_dcf_0.01": min_dcf(scores, labels, 0.01),
        "min_dcf_0.05": min_dcf(scores, labels, 0.05),
        "min_cllr": min_cllr(scores, labels),
    }
    if calibration is not None:
        llrs = calibration.llr(scores)
        out.update({"cllr": cllr(llrs, labels), "act_dcf_0.01": act_dcf(llrs, labels, 0.01),
                    "act_dcf_0.05": act_dcf(llrs, labels, 0.05)})
    return out


def write_scores(path: str | os.PathLike, trials: pd.DataFrame, scores) -> None:
    """``label score path1 path2`` per trial, atomically."""
    scores = np.asarray(scores, dtype=np.float64)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for label, s, p1, p2 in zip(trials.label.to_numpy(), scores, trials.path1.to_numpy(),
                                    trials.path2.to_numpy(), strict=True):
            f.write(f"{label} {s:.6f} {p1} {p2}\n")


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """A score file written by :func:`write_scores` (columns label, score, path1, path2)."""
    return pd.read_csv(path, sep=" ", header=None, names=["label", "score", "path1", "path2"])


def _embed(embedder, files: pd.DataFrame, hparams: dict, device, desc: str) -> torch.Tensor:
    from lowres.data.shards import eval_audio

    num_samples = np.round(files.duration.to_numpy(dtype=float) * SAMPLE_RATE).astype(np.int64)
    shards = eval_audio(hparams)  # data_format shards: the files from shard_folder
    with test_autocast(hparams.get("test_precision", "fp16"), device):
        return extract_embeddings(
            embedder, files.wav.tolist(), num_samples=num_samples,
            load=shards.load_audio if shards is not None else None,
            batch_size=int(hparams.get("eval_batch_size", 16)),
            max_batch_seconds=float(hparams.get("eval_max_batch_seconds", 400.0)),
            device=device, progress=desc,
            num_workers=int(hparams.get("eval_num_workers", hparams.get("num_workers", 0))),
        )


def training_cohort(hparams: dict, ckpt_name: str, cache: Path, device) -> torch.Tensor:
    """Per-speaker mean embeddings of the training set (whole files), cached in ``cache``.

    ``cohort_max_files_per_speaker`` (hparams, default all) caps the files per
    speaker (the first ones by ID) to bound the pass over a large training set.
    """
    train_csv = os.fspath(hparams["train_csv"])
    cap = hparams.get("cohort_max_files_per_speaker")
    key = {"checkpoint": ckpt_name, "train_csv": train_csv, "max_files_per_speaker": cap,
           "precision": precision_on(hparams.get("test_precision", "fp16"), device)[0]}
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
    emb = _embed(hparams["embedder"], train, hparams, device, "cohort (train set)")
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
          and src.get("test_precision") == precision_on(hparams.get("test_precision", "fp16"),
                                                         device)[0]
          and src.get("manifest_folder") == os.fspath(hparams["manifest_folder"])
          and all(s in sets for s in test_sets)
          and (not validation or "validation" in src)
          and (not validation or (src.get("calibration") or {}).get("prior")
               == float(hparams.get("calibration_prior", 0.5)))
          and (not post or all(
              as_norm_settings(sets[s].get("as_norm", {})) == as_norm for s in test_sets)))
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


def evaluate_run(
    hparams: dict,
    checkpoint: str = "best",
    test_sets: Sequence[str] | Iterable[str] = TEST_SETS,
    device: str | torch.device | None = None,
    validation: bool = True,
    run_opts=None,
    debug_files: int | None = None,
) -> dict:
    """Evaluate one run folder's checkpoint; writes and returns ``results.json``'s content.

    ``device``: default ``run_opts.device`` (SpeechBrain's run options, as
    train.py has them), else CUDA when available, else CPU.  Under DDP call it
    on the main process only.

    ``debug_files`` (SpeechBrain's ``--debug`` only): embed about that many files of each
    list (those of its first target and non-target trials, :func:`debug_trials`) and score
    only the trials whose files were embedded; the results go to
    ``eval/debug/<checkpoint>/`` with a ``debug`` entry, never where a run's results are.
    """
    test_sets = test_set_names(test_sets)
    check_values({**hparams, "test_sets": test_sets})
    if device is None and run_opts is not None:
        device = (run_opts.get("device") if isinstance(run_opts, dict)
                  else getattr(run_opts, "device", None))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision, note = precision_on(hparams.get("test_precision", "fp16"), device)
    if note:
        logger.warning(note)
    where = checkpoint if debug_files is None else f"debug/{checkpoint}"
    out = eval_folder(hparams["output_folder"], where)
    diverged = read_diverged(hparams["output_folder"])
    checkpointer = hparams["checkpointer"]
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    averaged = checkpoint == "averaged"
    by_best = checkpoint == "best" or (averaged and hparams.get("average_checkpoints_by",
                                                                "last") == "best")
    if by_best and checkpointer.find_checkpoint(min_key="val_eer") is None:
        latest = checkpointer.find_checkpoint()
        if latest is not None:  # trained, but no validation had a finite EER
            return _diverged_results(hparams, checkpoint, None, precision, diverged or {
                "step": latest.meta.get("step"),
                "reason": "no validation of training had a finite EER"}, where)
    used = load_averaged(hparams) if averaged else None
    ckpt = used[-1] if averaged else load_checkpoint(hparams, checkpoint)
    # the averaged weights are no checkpoint's: their own cohort cache key, never reused
    ckpt_name = ("averaged:" + ",".join(c.path.name for c in used)) if averaged \
        else ckpt.path.name
    post = bool(hparams.get("post_process_scores", False))
    variant = hparams.get("as_norm_variant", OLD_AS_NORM_VARIANT)
    as_norm = {"variant": variant, "top_k": int(hparams.get("as_norm_top_k", DEFAULT_TOP_K))
               if variant == "two_sided_top_k" else None,  # one-sided: the whole cohort
               "cohort_max_files_per_speaker": hparams.get("cohort_max_files_per_speaker")}
    if not averaged and debug_files is None:
        reused = _reuse_other_checkpoint(hparams, checkpoint, ckpt_name, test_sets, validation,
                                         post, as_norm, device)
        if reused is not None:
            return reused
    embedder = hparams["embedder"].to(device)

    # Every file of every requested list (and the validation list) once.
    lists: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    for name in test_sets:
        csv, trials = test_set_files(hparams["manifest_folder"], name)
        lists[name] = (read_manifest(csv), read_trials(trials))
    if validation:
        lists["validation"] = (read_manifest(hparams["valid_csv"]),
                               read_trials(hparams["val_trials"]))
    files = pd.concat([df[["ID", "duration", "wav"]] for df, _ in lists.values()])
    files = files.drop_duplicates("ID").reset_index(drop=True)
    debug = None
    if debug_files is not None:
        chosen = [debug_trials(trials, max(2, debug_files // len(lists)))
                  for _, trials in lists.values()]
        keep = set().union(*(set(t.id1) | set(t.id2) for t in chosen))
        files = files[files.ID.isin(keep)].reset_index(drop=True)
        debug = {"files_embedded": len(files), "trials_scored": {}}
        for name, (df, trials) in lists.items():
            lists[name] = (df, embedded_trials(trials, keep, name))
            debug["trials_scored"][name] = [len(lists[name][1]), len(trials)]
    index_of = dict(zip(files.ID, range(len(files)), strict=True))
    indices = {name: trial_indices(trials, index_of, name) for name, (_, trials) in lists.items()}

    t0 = time.perf_counter()
    emb = _embed(embedder, files, hparams, device, f"embeddings ({checkpoint})")
    embedding_seconds = time.perf_counter() - t0
    nonfinite = int((~torch.isfinite(emb).all(dim=1)).sum())
    if nonfinite:
        return _diverged_results(hparams, checkpoint, ckpt, precision, {
            "step": ckpt.meta.get("step"),
            "reason": f"{nonfinite} of {len(files)} embeddings are not finite"}, where)

    cohort = None
    if post or hparams.get("enroll_training_data", False):
        cohort = training_cohort(hparams, ckpt_name, out / COHORT, device)

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
    if averaged:
        results["averaged"] = {
            "by": hparams.get("average_checkpoints_by", "last"), "n": len(used),
            "checkpoints": [{"name": c.path.name, "meta": dict(c.meta)} for c in used]}
    calibration = as_norm_calibration = None
    if validation:
        left, right = indices["validation"]
        labels = lists["validation"][1].label.to_numpy()
        val_scores = cosine_trial_scores(emb, left, right).numpy()
        res = eer(val_scores, labels)
        results["validation"] = {"n_trials": int(len(labels)), "eer": res.eer,
                                 "eer_threshold": _finite_or_none(res.threshold)}
        prior = float(hparams.get("calibration_prior", 0.5))
        calibration = fit_calibration(val_scores, labels, prior)
        results["calibration"] = {**calibration._asdict(), "prior": prior,
                                  "trained_on": "validation", "n_trials": int(len(labels))}
        if post:
            normed = as_norm_scores(emb, left, right, cohort, as_norm["top_k"], variant).numpy()
            as_norm_calibration = fit_calibration(normed, labels, prior)
            results["calibration"]["as_norm"] = as_norm_calibration._asdict()
    for name in test_sets:
        trials = lists[name][1]
        left, right = indices[name]
        labels = trials.label.to_numpy()
        scores = cosine_trial_scores(emb, left, right).numpy()
        entry = trial_metrics(scores, labels, calibration)
        entry["scores"] = scores_name(name)
        write_scores(out / entry["scores"], trials, scores)
        if post:
            normed = as_norm_scores(emb, left, right, cohort, as_norm["top_k"], variant).numpy()
            entry["as_norm"] = trial_metrics(normed, labels, as_norm_calibration)
            entry["as_norm"].update(scores=scores_name(name, as_norm=True), **as_norm,
                                    cohort_size=int(cohort.shape[0]))
            write_scores(out / entry["as_norm"]["scores"], trials, normed)
        results["test_sets"][name] = entry
        logger.info("%s %s: EER %.2f%% over %d trials", checkpoint, name, 100 * entry["eer"],
                    entry["n_trials"])
    write_results(hparams["output_folder"], where, results)
    return results


def evaluate_after_training(hparams: dict, device: str | torch.device,
                            debug_files: int | None = None) -> None:
    """train.py's test of a trained run: the last checkpoint (unless evaluate_last is false),
    the averaged one (average_checkpoints) and the best, each by :func:`evaluate_run`.

    ``eval/best/results.json`` is written last: it marks the run as finished.  With
    ``--debug`` (``debug_files``): a few files of each list only, into ``eval/debug/``.
    """
    # eval/best last; evaluate_run reads test_sets in every form a user types
    which_ones = (*(["last"] if hparams.get("evaluate_last", True) else []),
                  *(["averaged"] if hparams["average_checkpoints"] else []), "best")
    for which in which_ones:
        evaluate_run(hparams, checkpoint=which, test_sets=hparams["test_sets"], device=device,
                     debug_files=debug_files)


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

