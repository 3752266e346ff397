"""Confidence intervals of EER and minDCF by resampling test speakers.

The trials of a VoxCeleb test list share few speakers (40 in VoxCeleb1-O), so they are
far from independent: one speaker who is hard to verify moves hundreds of trials at
once.  Resampling trials, or a binomial interval, treats them as independent and is too
narrow.  This module resamples *speakers* (a vertex bootstrap of the trial graph): each
draw picks the test speakers with replacement and keeps every trial as often as a test
set made of the drawn speakers would hold it.  With ``m_s`` the times speaker ``s`` is
drawn:

* a non-target trial of speakers ``a`` and ``b`` counts ``m_a * m_b`` times: each copy
  of ``a`` meets each copy of ``b``;
* a target trial of speaker ``s`` counts ``m_s`` times, not ``m_s ** 2``: each copy of
  ``s`` brings its own recordings and its own same-speaker pairs.  Pairs across two copies
  of one speaker would pair recordings with copies of themselves, which no test list holds.

So the metrics of one draw are exactly those of an explicit trial list with repeated
rows (see the tests), up to float rounding.  They are computed from one sort of the
scores, only at the operating points where the class of the sorted trials changes (inside
a run of one class the ROC curve is a straight segment, so neither the EER crossing nor
the minimum DCF needs its inner points).  Per block of draws, one sparse product sums the
weights of each run of each class for all draws at once; EER and minDCF then come from
:func:`~lowres.scoring.metrics.eer_of_curve` and :func:`~lowres.scoring.metrics.normalised_dcf`,
the same code as :func:`~lowres.scoring.metrics.eer` and ``min_dcf``.  The interval is the
percentile interval of the draws.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from lowres.scoring.metrics import _check, eer_of_curve, normalised_dcf, sort_groups

__all__ = ["Interval", "SpeakerBootstrap", "speaker_bootstrap", "speaker_of"]

_BLOCK_ELEMENTS = 1 << 24  # draws are scored in blocks of about this many (trial, draw) cells


class Interval(NamedTuple):
    """A percentile interval of one metric over the bootstrap draws."""

    low: float
    high: float


def speaker_of(path: str) -> str:
    """The speaker of a VoxCeleb trial path: its first component (``id10270/x6u../1.wav``)."""
    return path.split("/", 1)[0]


class SpeakerBootstrap:
    """Metrics of one score list under resampled test speakers.

    ``speakers1`` / ``speakers2`` name the speakers of each trial's two sides; target
    trials (label 1) must have one speaker, non-target trials two different ones.
    """

    def __init__(self, scores, labels, speakers1, speakers2) -> None:
        s, y = _check(scores, labels)
        if not len(speakers1) == len(speakers2) == s.size:
            raise ValueError(f"{s.size} trials but {len(speakers1)} and {len(speakers2)} "
                             "speakers")
        names, sides = np.unique(np.concatenate([np.asarray(speakers1, dtype=str),
                                                 np.asarray(speakers2, dtype=str)]),
                                 return_inverse=True)
        spk1, spk2 = sides[:s.size], sides[s.size:]
        if names.size < 2:
            raise ValueError(f"the trials have {names.size} speaker ({names[0]}); resampling "
                             "speakers needs at least two")
        if (spk1[y] != spk2[y]).any():
            raise ValueError(f"{int((spk1[y] != spk2[y]).sum())} target trial(s) pair two "
                             "different speakers")
        if (spk1[~y] == spk2[~y]).any():
            raise ValueError(f"{int((spk1[~y] == spk2[~y]).sum())} non-target trial(s) pair a "
                             "speaker with itself")
        self.speakers = names
        order, cuts = sort_groups(s)
        y, spk1, spk2 = y[order], spk1[order], spk2[order]
        # Operating point k rejects the tie groups before it; keep the ends, and the
        # points between two groups unless both hold only one and the same class.
        tar_in = np.add.reduceat(y, cuts[:-1]) > 0
        non_in = np.add.reduceat(~y, cuts[:-1]) > 0
        inner = (tar_in[:-1] & tar_in[1:] & ~non_in[:-1] & ~non_in[1:]) | (
            non_in[:-1] & non_in[1:] & ~tar_in[:-1] & ~tar_in[1:])
        kept = cuts[np.concatenate(([True], ~inner, [True]))]
        tar_below = np.concatenate(([0], np.cumsum(y)))[kept]  # in target order
        # Targets weigh their speaker's count: sum them per speaker, no gather per draw.
        self._tar_runs = _Runs(tar_below, spk1[y], names.size)
        self._non_runs = _Runs(kept - tar_below, np.arange(y.size - y.sum()), y.size - y.sum())
        self._non_spk = (spk1[~y], spk2[~y])

    def counts(self, draws: int, seed: int) -> np.ndarray:
        """``(draws, speakers)`` times each speaker is drawn; reproducible from ``seed``."""
        n = self.speakers.size
        return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=draws)

    def metrics(self, counts: np.ndarray, p_targets: tuple[float, ...] = (0.01, 0.05)
                ) -> dict[str, np.ndarray]:
        """EER and ``min_dcf_<p>`` of each draw (row of ``counts``).

        A draw without target or without non-target trials gives NaN.
        """
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if counts.shape[1] != self.speakers.size:
            raise ValueError(f"counts has {counts.shape[1]} columns for "
                             f"{self.speakers.size} speakers")
        # Draws run along the contiguous axis, so gathers copy rows and sums vectorise.
        columns = max(1, _BLOCK_ELEMENTS // self._non_spk[0].size)
        out = {"eer": []} | {f"min_dcf_{p:g}": [] for p in p_targets}
        for start in range(0, counts.shape[0], columns):
            m = np.ascontiguousarray(counts[start:start + columns].T)
            tar = self._tar_runs.cumulative(m)
            non = m[self._non_spk[0]]
            non *= m[self._non_spk[1]]
            non = self._non_runs.cumulative(non)
            # A draw without one of the classes divides by 0 and comes out NaN.
            with np.errstate(invalid="ignore", divide="ignore"):
                p_miss = tar / tar[:, -1:]
                p_fa = (non[:, -1:] - non) / non[:, -1:]  # as operating_points
                out["eer"].append(eer_of_curve(p_miss, p_fa)[0])
            for p in p_targets:
                out[f"min_dcf_{p:g}"].append(normalised_dcf(p_miss, p_fa, p).min(axis=1))
        return {k: np.concatenate(v) for k, v in out.items()}


class _Runs:
    """Per draw, the weight of one class's trials below each kept operating point.

    ``below[k]`` counts the class's trials (in score order) under kept point ``k``;
    trial ``i`` sums ``x[columns[i]]``, so one sparse product adds up all draws at once.
    """

    def __init__(self, below: np.ndarray, columns: np.ndarray, width: int) -> None:
        from scipy.sparse import csr_matrix

        # Kept points inside a run of the other class share a bound.
        bounds, self._point = np.unique(below, return_inverse=True)
        segment = np.searchsorted(bounds, np.arange(columns.size), side="right") - 1
        self._sum = csr_matrix((np.ones(columns.size), (segment, columns)),
                               shape=(bounds.size - 1, width))

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """``(draws, points)`` weights from ``x`` of shape ``(width, draws)``."""
        cum = np.zeros((self._sum.shape[0] + 1, x.shape[1]))
        np.cumsum(self._sum @ x, axis=0, out=cum[1:])
        return cum[self._point].T


class BootstrapResult(NamedTuple):
    """Percentile intervals of a speaker bootstrap, and how they were drawn."""

    intervals: dict[str, Interval]
    level: float
    draws: int
    seed: int
    speakers: int
    degenerate: int  # draws without targets or non-targets, left out of the intervals


def speaker_bootstrap(scores, labels, paths1, paths2, draws: int = 1000, level: float = 0.95,
                      seed: int = 0, p_targets: tuple[float, ...] = (0.01, 0.05)
                      ) -> BootstrapResult:
    """Speaker-bootstrap percentile intervals of EER and minDCF of one score list.

    ``paths1`` / ``paths2`` are the trial paths; their first component is the speaker.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    boot = SpeakerBootstrap(scores, labels, [speaker_of(p) for p in paths1],
                            [speaker_of(p) for p in paths2])
    values = boot.metrics(boot.counts(draws, seed), p_targets)
    tails = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    intervals = {k: Interval(*(float(q) for q in np.nanpercentile(v, tails)))
                 for k, v in values.items()}
    degenerate = int(np.isnan(values["eer"]).sum())
    return BootstrapResult(intervals, level, draws, seed, boot.speakers.size, degenerate)
