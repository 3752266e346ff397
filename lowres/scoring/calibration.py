"""Calibration of verification scores to log-likelihood ratios, and the costs that judge it.

A cosine score only orders trials; a log-likelihood ratio (LLR) says how much more likely
the two recordings are under "same speaker" than under "different speakers", so a
decision for any prior and costs is one fixed threshold on it, the Bayes threshold
(:func:`bayes_threshold`), with no threshold to tune on the test data.

* :func:`fit_calibration`: linear calibration ``llr = scale * score + offset``, fitted by
  prior-weighted logistic regression, the objective of the "linear calibration" of
  FoCal / BOSARIS (Brümmer & du Preez 2006; van Leeuwen & Brümmer 2007)::

      P / N_tar * sum_tar log(1 + exp(-(llr + logit P)))
      + (1 - P) / N_non * sum_non log(1 + exp(llr + logit P))

  which at the prior ``P = 0.5`` is Cllr times log 2.  The two classes count by their
  prior, not by their numbers of trials.  Targets are smoothed as in Platt (1999)
  (``(N_tar + 1) / (N_tar + 2)`` and ``1 / (N_non + 2)`` instead of 1 and 0), so the fit
  stays finite when the calibration trials are separable (tiny and synthetic runs); on
  thousands of trials this changes the fitted LLRs by O(1 / N).
* :func:`cllr`: the cost of LLRs over all operating points (0: perfect, 1: a system
  that always says 0, more: worse than that).
* :func:`min_cllr`: the Cllr of the best monotone calibration of the scores (what is
  left once calibration is perfect); PAV, computed exactly as the lower convex hull
  of the cumulative (trials, targets) counts in score order, i.e. the ROC convex hull
  (:func:`pav_blocks`, for many weighted curves at once as the speaker bootstrap needs).
* :func:`act_dcf`: the normalised DCF of the Bayes decisions on LLRs, to set beside
  :func:`lowres.scoring.metrics.min_dcf` (their difference is the calibration loss).

Conventions as in :mod:`lowres.scoring.metrics`: labels 1 target, 0 non-target; accept
when ``llr >= threshold``; equal scores always get the same LLR (ties are never split);
one sort, O(n log n).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lowres.scoring.metrics import _check

__all__ = ["Calibration", "act_dcf", "bayes_threshold", "cllr", "fit_calibration",
           "min_cllr", "pav_blocks", "pav_cllr"]

_LOG2 = math.log(2.0)


class Calibration(NamedTuple):
    """``llr = scale * score + offset`` (natural-log likelihood ratio)."""

    scale: float
    offset: float

    def llr(self, scores) -> np.ndarray:
        """LLRs of ``scores`` (array-like or a float)."""
        return self.scale * np.asarray(scores, dtype=np.float64) + self.offset

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """From a dict with "scale" and "offset" (e.g. results.json's "calibration")."""
        return cls(float(d["scale"]), float(d["offset"]))


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _check_prior(p: float, name: str = "p_target") -> None:
    if not 0.0 < p < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {p}")


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """LLR threshold of the minimum-cost decision: accept when ``llr >= -logit(p_eff)``.

    ``p_eff = c_miss p / (c_miss p + c_fa (1 - p))``; e.g. 2.944 at p_target 0.05.
    """
    _check_prior(p_target)
    return math.log(c_fa * (1.0 - p_target)) - math.log(c_miss * p_target)


def fit_calibration(scores, labels, prior: float = 0.5) -> Calibration:
    """Linear calibration of ``scores`` by prior-weighted logistic regression (see above).

    Fitted with scipy's trust-region Newton method on standardised scores (the objective
    is convex; exact gradient and Hessian).  Constant scores get ``scale`` 0 and the
    offset that gives the weighted target fraction.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    _check_prior(prior, "prior")
    s, y = _check(scores, labels)
    n_tar = int(y.sum())
    n_non = y.size - n_tar
    # Smoothed targets and prior weights per trial.
    t = np.where(y, (n_tar + 1.0) / (n_tar + 2.0), 1.0 / (n_non + 2.0))
    w = np.where(y, prior / n_tar, (1.0 - prior) / n_non)
    shift = _logit(prior)
    mean, std = float(s.mean()), float(s.std())
    if std == 0.0:  # only the offset is identifiable: sigmoid(z) = weighted mean target
        q = float((w * t).sum())
        return Calibration(0.0, _logit(q) - shift)
    x = (s - mean) / std

    def objective(theta):
        z = theta[0] * x + theta[1] + shift
        # -[t log sigmoid(z) + (1 - t) log sigmoid(-z)], stable for any z
        loss = np.logaddexp(0.0, -z) + (1.0 - t) * z
        r = w * (expit(z) - t)
        return float((w * loss).sum()), np.array([(r * x).sum(), r.sum()])

    def hessian(theta):
        z = theta[0] * x + theta[1] + shift
        p = expit(z)
        h = w * p * (1.0 - p)
        hx = h * x
        return np.array([[(hx * x).sum(), hx.sum()], [hx.sum(), h.sum()]])

    res = minimize(objective, np.array([1.0, 0.0]), jac=True, hess=hessian,
                   method="trust-exact")
    if not res.success:
        raise RuntimeError(f"calibration did not converge: {res.message}")
    a, b = (float(v) for v in res.x)
    return Calibration(a / std, b - a * mean / std)


def cllr(llrs, labels) -> float:
    """Log-likelihood-ratio cost in bits: the mean of both classes' log2(1 + e^-+llr) terms."""
    s, y = _check(llrs, labels)
    tar = np.logaddexp(0.0, -s[y]).mean()
    non = np.logaddexp(0.0, s[~y]).mean()
    return float((tar + non) / (2.0 * _LOG2))


def min_cllr(scores, labels) -> float:
    """Cllr after the optimal monotone (PAV) calibration of ``scores`` (exact).

    In score order, the PAV calibration pools trials into blocks along the lower convex
    hull of the points (trials so far, targets so far) (:func:`pav_blocks`); a block with
    ``t`` targets and ``n`` non-targets gets the posterior ``t / (t + n)``, i.e. the LLR
    ``log(t / n) - log(N_tar / N_non)`` (:func:`pav_cllr`).
    """
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="quicksort")
    s, y = s[order], y[order]
    cuts = np.concatenate(([0], np.flatnonzero(s[1:] != s[:-1]) + 1, [s.size]))  # tie groups
    targets = np.concatenate(([0], np.cumsum(y, dtype=np.int64)))[cuts]
    return float(pav_cllr(*pav_blocks(cuts.astype(np.float64), targets.astype(np.float64)))[0])


def pav_blocks(trials: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets and non-targets of each PAV block of one or many curves.

    Each row of ``trials`` / ``targets`` is a curve of (trials so far, targets so far) in
    score order from (0, 0) to (N, N_tar), given at least at every bound between tie
    groups (points between two bounds of a straight stretch may be left out) and with
    ``N_tar``, ``N - N_tar`` > 0.  The blocks lie along the curve's lower convex hull, found
    for all rows at once: a point above or on the chord of its neighbours is no hull
    vertex, so such points are dropped, all in one pass, until none is left; what remains
    is convex, hence the hull.  Counts (or integer weights) are exact in float64, so the
    hull is too.  Returns ``(t, m)`` of shape ``(rows, blocks)``, zero-padded.
    """
    x, y = np.atleast_2d(trials), np.atleast_2d(targets)
    keep = np.ones(x.shape, bool)
    keep[:, 1:] = x[:, 1:] > x[:, :-1]  # one copy of each point
    while True:
        x, y, n = _compact(x, y, keep)
        inner = np.arange(1, x.shape[1] - 1) < n[:, None] - 1
        cross = ((x[:, 1:-1] - x[:, :-2]) * (y[:, 2:] - y[:, :-2])
                 - (y[:, 1:-1] - y[:, :-2]) * (x[:, 2:] - x[:, :-2]))  # > 0: below the chord
        drop = inner & (cross <= 0)
        if not drop.any():
            break
        keep = np.arange(x.shape[1]) < n[:, None]
        keep[:, 1:-1] &= ~drop
    valid = np.arange(x.shape[1] - 1) < n[:, None] - 1
    t = np.where(valid, np.diff(y), 0.0)
    return t, np.where(valid, np.diff(x), 0.0) - t


def _compact(x: np.ndarray, y: np.ndarray, keep: np.ndarray):
    """The kept points of each row moved to its front, in order, and their numbers."""
    rows, cols = np.nonzero(keep)
    n = keep.sum(axis=1)
    at = np.arange(rows.size) - np.repeat(np.cumsum(n) - n, n)  # position within its row
    out = np.zeros((2, x.shape[0], n.max()))
    out[0, rows, at], out[1, rows, at] = x[rows, cols], y[rows, cols]
    return out[0], out[1], n


def pav_cllr(t: np.ndarray, m: np.ndarray) -> np.ndarray:
    """min Cllr of PAV blocks of ``t`` targets and ``m`` non-targets along the last axis
    (:func:`pav_blocks`; zero blocks cost nothing)."""
    n_tar, n_non = t.sum(axis=-1, keepdims=True), m.sum(axis=-1, keepdims=True)
    odds = n_tar / n_non
    # Per block: targets cost log(1 + e^-llr) = log((t + m odds) / t), non-targets
    # log(1 + e^llr) = log((m + t / odds) / m); blocks of one class cost that class 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        tar = np.where(t > 0, t * np.log1p(m * odds / np.where(t > 0, t, 1.0)), 0.0)
        non = np.where(m > 0, m * np.log1p(t / odds / np.where(m > 0, m, 1.0)), 0.0)
    return ((tar.sum(axis=-1, keepdims=True) / n_tar + non.sum(axis=-1, keepdims=True) / n_non)
            / (2.0 * _LOG2))[..., 0]


def act_dcf(llrs, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised DCF of accepting ``llr >= bayes_threshold(p_target, c_miss, c_fa)``."""
    threshold = bayes_threshold(p_target, c_miss, c_fa)
    s, y = _check(llrs, labels)
    p_miss = float((s[y] < threshold).mean())
    p_fa = float((s[~y] >= threshold).mean())
    dcf = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    return dcf / min(c_miss * p_target, c_fa * (1.0 - p_target))
