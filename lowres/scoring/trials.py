"""Cosine scores of a trial list (:func:`lowres.io.lists.read_trials`) over embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from lowres.io.lists import ListError
from lowres.scoring.score_norm import cosine_trial_scores


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


def score_trials(embeddings: Mapping[str, torch.Tensor], trials: pd.DataFrame,
                 name: str = "trials") -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and labels of ``trials`` over ``{id: embedding}``."""
    ids = sorted(set(trials.id1) | set(trials.id2))
    index_of = {u: i for i, u in enumerate(ids)}
    left, right = trial_indices(trials, {u: i for u, i in index_of.items() if u in embeddings},
                                name)
    emb = torch.stack([embeddings[u] for u in ids]).float()
    return cosine_trial_scores(emb, left, right).numpy(), trials.label.to_numpy()
