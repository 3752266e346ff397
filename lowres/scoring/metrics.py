"""Verification metrics: equal error rate and normalised minimum detection cost.

Both are computed exactly from one sort of the scores (O(n log n)), in numpy.

Conventions shared by both functions:

* A trial is *accepted* (called "same speaker") when ``score >= threshold``.
* ``labels`` are 1 for target (same speaker) and 0 for non-target trials.
* Operating points are only taken between *distinct* scores (plus "accept
  everything" and "reject everything"), so trials with equal scores always
  get the same decision: ties are never split.  A threshold between two
  distinct scores ``a < b`` is reported as their midpoint; the extreme
  operating points have thresholds ``-inf`` and ``+inf``.
* Inputs with only one class (no targets or no non-targets), empty inputs,
  NaN scores or labels other than 0/1 raise ``ValueError``.

EER: the miss rate P_miss(t) rises and the false-alarm rate P_fa(t) falls as
the threshold grows.  Between the last operating point with P_miss < P_fa and
the first with P_miss >= P_fa the DET/ROC curve is a straight segment; the EER
is where that segment crosses P_miss = P_fa (linear interpolation).  Without
ties between the two classes this is the usual step-curve crossing; a tie
group that mixes classes makes the segment diagonal, which is exactly the
expected error rate under random tie-breaking.  The threshold returned is the
one of the two bracketing operating points whose |P_miss - P_fa| is smaller
(the later one when equal), so it can be applied to new scores.

minDCF (NIST SRE / VoxSRC):
    DCF(t) = c_miss * p_target * P_miss(t) + c_fa * (1 - p_target) * P_fa(t),
    normalised by min(c_miss * p_target, c_fa * (1 - p_target)) (the cost of
    the best trivial system), minimised over all operating points.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "EerResult", "DcfResult", "eer", "eer_of_curve", "min_dcf", "min_dcf_with_threshold",
    "normalised_dcf", "operating_points", "sort_groups",
]


class EerResult(NamedTuple):
    """Equal error rate (a fraction in [0, 1], not percent) and its threshold."""

    eer: float
    threshold: float


class DcfResult(NamedTuple):
    """Normalised minimum DCF and the threshold where it is reached."""

    min_dcf: float
    threshold: float


def _as_numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly on GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy(scores, "scores").astype(np.float64, copy=False)
    y = _as_numpy(labels, "labels")
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    if s.size == 0:
        raise ValueError("no trials: scores and labels are empty")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
            raise ValueError(f"labels must be 0 (non-target) or 1 (target); found {bad.tolist()}")
        y = y.astype(bool)
    n_tar = int(y.sum())
    if n_tar == 0 or n_tar == y.size:
        kind = "non-target (0)" if n_tar == 0 else "target (1)"
        raise ValueError(
            f"all {y.size} trials are {kind}: EER and minDCF need both target and "
            "non-target trials"
        )
    return s, y


def sort_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ascending order of ``scores`` and the bounds of its groups of equal scores.

    Returns ``(order, cuts)``: ``scores[order]`` is sorted and group ``g`` is
    ``order[cuts[g]:cuts[g + 1]]``; ``cuts`` starts at 0 and ends at ``scores.size``.
    Operating point ``k`` rejects groups ``0 .. k - 1``.
    """
    order = np.argsort(scores, kind="quicksort")
    s = scores[order]
    ends = np.flatnonzero(s[1:] != s[:-1]) + 1
    return order, np.concatenate(([0], ends, [s.size]))


def operating_points(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All distinct operating points, in order of increasing threshold.

    Returns ``(thresholds, p_miss, p_fa)``, each of length (number of distinct
    scores + 1).  Point ``k`` rejects the ``k`` lowest distinct score values:
    ``thresholds[0] = -inf`` (accept all: p_miss 0, p_fa 1), the last is
    ``+inf`` (reject all: p_miss 1, p_fa 0), the others are midpoints between
    consecutive distinct scores.
    """
    s, y = _check(scores, labels)
    order, cuts = sort_groups(s)
    s = s[order]
    tar_below = np.concatenate(([0], np.cumsum(y[order], dtype=np.int64)))[cuts]
    n_tar = int(tar_below[-1])
    p_miss = tar_below / n_tar
    p_fa = (s.size - n_tar - (cuts - tar_below)) / (s.size - n_tar)
    ends = cuts[1:-1]
    lo, hi = s[ends - 1], s[ends]
    mid = lo + (hi - lo) / 2
    # For adjacent floats the midpoint may round down onto `lo`; then `hi`
    # itself is the threshold that separates them under `score >= t`.
    mid = np.where(mid > lo, mid, hi)
    thresholds = np.concatenate(([-np.inf], mid, [np.inf]))
    return thresholds, p_miss, p_fa


def eer(scores, labels) -> EerResult:
    """Equal error rate of `scores` (higher = more likely same speaker).

    Returns ``EerResult(eer, threshold)``; unpack as ``e, t = eer(s, y)`` or
    use ``eer(s, y).eer``.  EER is a fraction (0.05 = 5 %).
    """
    thr, p_miss, p_fa = operating_points(scores, labels)
    value, k = eer_of_curve(p_miss, p_fa)
    return EerResult(float(value), float(thr[k]))


def eer_of_curve(p_miss: np.ndarray, p_fa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EER of curves given along the last axis in order of increasing threshold.

    Each curve starts at (p_miss 0, p_fa 1) and ends at (1, 0).  Returns the EER and
    the index of the bracketing operating point whose ``|p_miss - p_fa|`` is smaller
    (the later one when equal), both with the leading shape, so one call scores a
    whole stack of bootstrap curves.
    """
    # p_miss - p_fa is non-decreasing, -1 at the first point and +1 at the last.
    diff = p_miss - p_fa
    j = np.count_nonzero(diff < 0, axis=-1)[..., None]  # first index with diff >= 0

    def at(a, i):
        return np.take_along_axis(a, i, axis=-1)[..., 0]

    d0 = -at(diff, j - 1)  # > 0
    d1 = at(diff, j)  # >= 0
    m0 = at(p_miss, j - 1)
    value = m0 + d0 / (d0 + d1) * (at(p_miss, j) - m0)
    return value, np.where(d1 <= d0, j[..., 0], j[..., 0] - 1)


def normalised_dcf(p_miss: np.ndarray, p_fa: np.ndarray, p_target: float,
                   c_miss: float = 1.0, c_fa: float = 1.0) -> np.ndarray:
    """DCF at each operating point, over the cost of the best trivial system."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss}, {c_fa}")
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return dcf / min(c_miss * p_target, c_fa * (1.0 - p_target))


def min_dcf(scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE / VoxSRC definition).

    Use :func:`min_dcf_with_threshold` for the threshold as well.
    """
    return min_dcf_with_threshold(scores, labels, p_target, c_miss, c_fa).min_dcf


def min_dcf_with_threshold(
    scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> DcfResult:
    """Normalised minimum DCF and the (first, lowest) threshold that reaches it."""
    thr, p_miss, p_fa = operating_points(scores, labels)
    dcf = normalised_dcf(p_miss, p_fa, p_target, c_miss, c_fa)
    k = int(np.argmin(dcf))
    return DcfResult(float(dcf[k]), float(thr[k]))
