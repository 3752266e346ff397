"""Paired comparisons of two systems scored on the same trials, and Holm's correction for a
family of them.

Both systems are scored under the same speaker draws of :mod:`lowres.scoring.bootstrap`,
so each draw gives one difference of their metrics: a hard speaker set makes both worse in
the same draw, and what the draws of the difference spread over is what the two systems do
differently, not how hard the speakers are.  The difference's interval is the percentile
interval of those draws; its two-sided p-value is twice the smaller share of draws on
either side of 0, counted as ``(k + 1) / (draws + 1)`` so that it is never 0: with 1,000
draws it is at least 0.002.  Holm's step-down correction keeps the chance of any false
"holds" in a family of comparisons at ``1 - level``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lowres.scoring.bootstrap import Interval, percentile_interval

__all__ = ["Paired", "bootstrap_p", "holm", "paired_difference"]


class Paired(NamedTuple):
    """``a - b`` of one metric: on the whole list, its interval over the draws, its p-value."""

    diff: float
    interval: Interval
    p: float


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from the draws of a difference (NaN left out)."""
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        raise ValueError("no draw has a difference (every draw lacks a class)")
    side = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0))
    return float(min(1.0, 2.0 * (side + 1) / (d.size + 1)))


def paired_difference(a_draws: np.ndarray, b_draws: np.ndarray, a: float, b: float,
                      level: float) -> Paired:
    """``a - b`` (the metric on the whole lists) with the percentile interval and p-value of
    ``a_draws - b_draws``, the same speaker draws scored on both systems."""
    a_draws, b_draws = np.asarray(a_draws, np.float64), np.asarray(b_draws, np.float64)
    if a_draws.shape != b_draws.shape:
        raise ValueError(f"{a_draws.shape} and {b_draws.shape} draws: not the same draws")
    d = a_draws - b_draws
    return Paired(float(a - b), percentile_interval(d, level), bootstrap_p(d))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by m - i + 1 (i from 1), then made non-decreasing in that order, capped at 1.
    A comparison holds at level ``1 - alpha`` when its adjusted p-value is below alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (p.size - np.arange(p.size))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()
