"""A trial list (:func:`lowres.io.lists.read_trials`) over embeddings: its cosine scores,
their metrics, and the score file a test set's scores are kept in."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lowres.io.atomic import atomic_path
from lowres.io.lists import ListError
from lowres.scoring.bootstrap import speaker_bootstrap, speaker_of
from lowres.scoring.calibration import Calibration, act_dcf, cllr, min_cllr
from lowres.scoring.metrics import eer, min_dcf

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def trial_indices(trials: pd.DataFrame, index_of: Mapping[str, int],
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the embedding matrix for both sides of every trial of list ``name``."""
    ids1, ids2 = trials.id1.to_numpy(), trials.id2.to_numpy()
    unknown = sorted({i for i in np.concatenate([ids1, ids2]) if i not in index_of})
    if unknown:
        raise ListError(f"{name}: {len(unknown)} trial file(s) have no embedding, e.g. "
                        f"{unknown[:3]} (is the trial list from the same manifest folder?)")
    left = np.fromiter((index_of[i] for i in ids1), dtype=np.int64, count=len(ids1))
    right = np.fromiter((index_of[i] for i in ids2), dtype=np.int64, count=len(ids2))
    return left, right


def embedded_trials(trials: pd.DataFrame, embedded: Collection[str], name: str) -> pd.DataFrame:
    """Only the trials of list ``name`` whose two files are in ``embedded``, logged.

    For SpeechBrain's ``--debug`` runs, which embed a few batches only; never used
    otherwise (a normal run fails on a trial file without an embedding instead)."""
    keep = trials.id1.isin(embedded) & trials.id2.isin(embedded)
    logger.warning("%s: debug mode: scoring only the %d of %d trials whose files were "
                   "embedded", name, int(keep.sum()), len(trials))
    return trials[keep].reset_index(drop=True)


def debug_trials(trials: pd.DataFrame, max_files: int) -> pd.DataFrame:
    """Trials of at most ``max_files`` files in all, target and non-target taken in turn
    (so a debug run's few batches can score both kinds): what ``--debug`` embeds."""
    in_turn = np.argsort(trials.groupby("label").cumcount().to_numpy(), kind="stable")
    ids1, ids2 = trials.id1.to_numpy(), trials.id2.to_numpy()
    files: set[str] = set()
    rows = []
    for row in in_turn:
        new = {ids1[row], ids2[row]} - files
        if len(files) + len(new) <= max_files:
            files |= new
            rows.append(row)
        if len(files) >= max_files:
            break
    return trials.iloc[sorted(rows)].reset_index(drop=True)


def score_trials(embeddings: Mapping[str, torch.Tensor], trials: pd.DataFrame,
                 name: str = "trials", only_embedded: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and labels of ``trials`` over ``{id: embedding}``; ``only_embedded``
    (debug runs only): score just the trials whose files have embeddings."""
    import torch  # here only: score files are read and scored without torch (lowres.results)

    from lowres.scoring.score_norm import cosine_trial_scores

    if only_embedded:
        trials = embedded_trials(trials, embeddings.keys(), name)
    ids = sorted(set(trials.id1) | set(trials.id2))
    index_of = {u: i for i, u in enumerate(ids)}
    left, right = trial_indices(trials, {u: i for u, i in index_of.items() if u in embeddings},
                                name)
    emb = torch.stack([embeddings[u] for u in ids]).float() if ids else torch.zeros(0, 1)
    return cosine_trial_scores(emb, left, right).numpy(), trials.label.to_numpy()


def finite_or_none(x: float) -> float | None:
    """`x`, or None (JSON null) where it is not finite."""
    return float(x) if math.isfinite(x) else None


def trial_metrics(scores, labels, calibration: Calibration | None = None) -> dict:
    """n_trials, eer, eer_threshold, min_dcf_0.01, min_dcf_0.05, min_cllr of one score list;
    with a ``calibration`` also cllr, act_dcf_0.01 and act_dcf_0.05 of its LLRs."""
    res = eer(scores, labels)
    out = {
        "n_trials": int(len(labels)),
        "eer": res.eer,
        "eer_threshold": finite_or_none(res.threshold),
        "min_dcf_0.01": min_dcf(scores, labels, 0.01),
        "min_dcf_0.05": min_dcf(scores, labels, 0.05),
        "min_cllr": min_cllr(scores, labels),
    }
    if calibration is not None:
        llrs = calibration.llr(scores)
        out.update({"cllr": cllr(llrs, labels), "act_dcf_0.01": act_dcf(llrs, labels, 0.01),
                    "act_dcf_0.05": act_dcf(llrs, labels, 0.05)})
    return out


def trial_intervals(scores, trials: pd.DataFrame, calibration: Calibration | None,
                    settings: Mapping, name: str) -> dict | None:
    """results.json's ``intervals`` of list ``name``: speaker-bootstrap intervals of every
    metric of :func:`trial_metrics` but the actual DCF, with ``settings`` ``{"level",
    "draws", "seed"}``; None (logged) for a list of fewer than two speakers (a debug run's)
    or whose paths do not start with the speaker's folder as VoxCeleb's do (a target trial
    then seems to pair two speakers): the run's metrics stand without intervals."""
    speakers = {speaker_of(p) for p in np.concatenate([trials.path1, trials.path2])}
    if len(speakers) < 2:
        logger.warning("%s: no intervals: its trials have %d speaker(s)", name, len(speakers))
        return None
    t0 = time.perf_counter()
    try:
        result = speaker_bootstrap(scores, trials.label.to_numpy(), trials.path1.to_numpy(),
                                   trials.path2.to_numpy(), calibration=calibration, **settings)
    except ValueError as err:  # the speakers cannot be read from the paths
        logger.warning("%s: no intervals: %s (the speaker is a trial path's first folder)",
                       name, err)
        return None
    logger.info("%s: speaker-bootstrap intervals (%d draws of %d speakers) in %.1f s", name,
                result.draws, result.speakers, time.perf_counter() - t0)
    return result.as_json()


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
