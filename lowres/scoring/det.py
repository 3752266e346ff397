"""DET curves: miss rate against false-alarm rate on probit (normal-deviate) axes.

On these axes the curve of normally distributed target and non-target scores is a
straight line, and systems are told apart in the low-error corner that a ROC squeezes
together (Martin et al., "The DET curve in assessment of detection task performance",
1997).  The points are the exact operating points of
:func:`lowres.scoring.metrics.operating_points` (one sort, ties never split) joined
by straight lines: a staircase, with a diagonal step where a tie mixes targets and
non-targets, the same curve whose crossing with the diagonal is
:func:`lowres.scoring.metrics.eer`.
"""

from __future__ import annotations

import numpy as np

from lowres.scoring.metrics import eer, operating_points

__all__ = ["DET_TICKS", "det_curve", "det_limits", "plot_det_curve", "set_det_axes"]

# Tick positions (as fractions) of the usual DET plots.
DET_TICKS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4,
             0.6, 0.8, 0.9, 0.95, 0.98, 0.99)


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(p_fa, p_miss)`` at every operating point, from accept-all to reject-all."""
    _, p_miss, p_fa = operating_points(scores, labels)
    return p_fa, p_miss


def _probit(p: np.ndarray) -> np.ndarray:
    """Normal deviates; rates of 0 and 1 go to +-6 (far outside any axis here), not inf."""
    from scipy.special import ndtri

    return ndtri(np.clip(p, 1e-9, 1.0 - 1e-9))


def det_limits(smallest_rate: float, largest_eer: float) -> tuple[float, float]:
    """Axis limits that show the curves: from the tick at or below the smallest non-zero
    rate (1 / trials of the smaller class) to the tick at or above twice the largest EER
    (at least 40 %)."""
    low = max([t for t in DET_TICKS if t <= smallest_rate], default=DET_TICKS[0])
    high = min([t for t in DET_TICKS if t >= max(0.4, 2 * largest_eer)],
               default=DET_TICKS[-1])
    return low, high


def set_det_axes(ax, low: float = 0.001, high: float = 0.5) -> None:
    """Probit axes from ``low`` to ``high`` (fractions), ticks labelled in %, a diagonal."""
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"DET axis limits must satisfy 0 < low < high < 1, got {low}, {high}")
    ticks = [t for t in DET_TICKS if low <= t <= high]
    pos = _probit(np.asarray(ticks))
    labels = [f"{100 * t:g}" for t in ticks]
    lim = _probit(np.asarray([low, high]))
    for axis, set_lim in ((ax.xaxis, ax.set_xlim), (ax.yaxis, ax.set_ylim)):
        axis.set_ticks(pos)
        axis.set_ticklabels(labels)
        set_lim(*lim)
    ax.plot(lim, lim, color="gray", linewidth=0.6, linestyle=":")
    ax.set_xlabel("false-alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)


def plot_det_curve(ax, scores, labels, label: str | None = None, **line_kwargs):
    """Draw the DET curve of ``scores`` on axes prepared by :func:`set_det_axes`.

    The legend label gets the EER appended; rates of 0 or 1 (off any probit axis) are
    drawn outside the axes.  Returns the matplotlib line.
    """
    p_fa, p_miss = det_curve(scores, labels)
    rate = eer(scores, labels).eer
    text = f"EER {100 * rate:.2f}%" if label is None else f"{label} (EER {100 * rate:.2f}%)"
    (line,) = ax.plot(_probit(p_fa), _probit(p_miss), label=text, **line_kwargs)
    return line
