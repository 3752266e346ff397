"""Confidence intervals of EER, minDCF, Cllr and min Cllr by resampling test speakers.

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
the same code as :func:`~lowres.scoring.metrics.eer` and ``min_dcf``.

Cllr (of a calibration's LLRs) weighs the same trials: per draw, the targets' cost is a
sum over speakers (``m_s`` times each speaker's cost) and the non-targets' a quadratic form
(``m_a * m_b`` times the cost of each speaker pair), so all draws come from two sparse
products.  min Cllr needs the lower convex hull of each draw's weighted curve at the same
operating points (the PAV blocks), found for a block of draws at once by
:func:`~lowres.scoring.calibration.pav_blocks`.  On a VoxCeleb1-E-sized list
(``benchmarks/bootstrap_intervals.py``, 1,000 draws, 2 cores shared with other jobs) EER
and minDCF take 6-10 s, min Cllr 7-12 s (the same curves, then the hulls), Cllr 2-3 s, all
five in one call about 13 s; on VoxCeleb1-O all five take under 1 s.

The interval is the percentile interval of the draws.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import NamedTuple

import numpy as np

from lowres.scoring.calibration import Calibration, pav_blocks, pav_cllr
from lowres.scoring.metrics import _check, eer_of_curve, normalised_dcf, sort_groups

__all__ = ["DRAWS", "LEVEL", "METRICS", "SEED", "BootstrapResult", "Interval",
           "SpeakerBootstrap", "percentile_interval", "speaker_bootstrap", "speaker_of"]

# The defaults of the evaluation's intervals (hparams/shared/base.yaml's interval_* keys),
# also for run folders evaluated before those keys existed.
LEVEL = 0.95
DRAWS = 1000
SEED = 0
# What a draw can be scored on: cllr needs a calibration.
METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05", "cllr", "min_cllr")

_BLOCK_ELEMENTS = 1 << 24  # draws are scored in blocks of about this many (trial, draw) cells
_LOG2 = math.log(2.0)


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
    trials (label 1) must have one speaker, non-target trials two different ones.  With a
    ``calibration`` (``llr = scale * score + offset``) the draws can also be scored on Cllr.
    """

    def __init__(self, scores, labels, speakers1, speakers2,
                 calibration: Calibration | None = None) -> None:
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
        self.calibration = calibration
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
        if calibration is not None:
            self._cllr_sums = _CllrSums(calibration.llr(s[order]), y, spk1, spk2, names.size)

    @classmethod
    def from_paths(cls, scores, labels, paths1, paths2,
                   calibration: Calibration | None = None) -> SpeakerBootstrap:
        """From the trial paths of a score file (the speaker: :func:`speaker_of`)."""
        return cls(scores, labels, [speaker_of(p) for p in paths1],
                   [speaker_of(p) for p in paths2], calibration)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics a draw is scored on by default: all, Cllr only with a calibration."""
        return tuple(m for m in METRICS if m != "cllr" or self.calibration is not None)

    def counts(self, draws: int, seed: int) -> np.ndarray:
        """``(draws, speakers)`` times each speaker is drawn; reproducible from ``seed``.

        Two lists of the same speakers get the same draws from the same seed."""
        n = self.speakers.size
        return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=draws)

    def metrics(self, counts: np.ndarray, names: Collection[str] | None = None
                ) -> dict[str, np.ndarray]:
        """Each metric of ``names`` (default :attr:`metric_names`) per draw (row of ``counts``).

        Names: ``eer``, ``min_dcf_<p_target>`` (any p_target), ``cllr``, ``min_cllr``.  A
        draw without target or without non-target trials gives NaN.
        """
        names = tuple(self.metric_names if names is None else names)
        p_targets = {n: _p_target(n) for n in names if n.startswith("min_dcf_")}
        unknown = set(names) - {"eer", "cllr", "min_cllr", *p_targets}
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}; known: eer, min_dcf_<p>, "
                             "cllr, min_cllr")
        if "cllr" in names and self.calibration is None:
            raise ValueError("cllr needs the scores' calibration")
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        if counts.shape[1] != self.speakers.size:
            raise ValueError(f"counts has {counts.shape[1]} columns for "
                             f"{self.speakers.size} speakers")
        curve = [n for n in names if n != "cllr"]
        # Draws run along the contiguous axis, so gathers copy rows and sums vectorise.
        columns = max(1, _BLOCK_ELEMENTS // self._non_spk[0].size)
        out: dict[str, list] = {n: [] for n in names}
        for start in range(0, counts.shape[0], columns):
            m = np.ascontiguousarray(counts[start:start + columns].T)
            if "cllr" in names:
                out["cllr"].append(self._cllr_sums.cllr(m))
            if not curve:
                continue
            tar = self._tar_runs.cumulative(m)
            non = m[self._non_spk[0]]
            non *= m[self._non_spk[1]]
            non = self._non_runs.cumulative(non)
            # A draw without one of the classes divides by 0 and comes out NaN.
            with np.errstate(invalid="ignore", divide="ignore"):
                p_miss = tar / tar[:, -1:]
                p_fa = (non[:, -1:] - non) / non[:, -1:]  # as operating_points
                if "eer" in names:
                    out["eer"].append(eer_of_curve(p_miss, p_fa)[0])
            for name, p in p_targets.items():
                out[name].append(normalised_dcf(p_miss, p_fa, p).min(axis=1))
            if "min_cllr" in names:
                out["min_cllr"].append(self._min_cllr(tar, non))
        return {k: np.concatenate(v) for k, v in out.items()}

    def _min_cllr(self, tar: np.ndarray, non: np.ndarray) -> np.ndarray:
        """min Cllr per draw from the cumulative weights below each kept point."""
        trials = tar + non
        out = np.full(tar.shape[0], np.nan)
        both = (tar[:, -1] > 0) & (trials[:, -1] > tar[:, -1])
        if both.any():
            out[both] = pav_cllr(*pav_blocks(trials[both], tar[both]))
        return out


def _p_target(name: str) -> float:
    try:
        return float(name.removeprefix("min_dcf_"))
    except ValueError:
        raise ValueError(f"{name}: min_dcf_<p_target> needs a number") from None


class _CllrSums:
    """Per draw, the Cllr of the drawn trials: sums of costs per speaker and speaker pair."""

    def __init__(self, llr: np.ndarray, y: np.ndarray, spk1: np.ndarray, spk2: np.ndarray,
                 width: int) -> None:
        from scipy.sparse import csr_matrix

        tar = np.logaddexp(0.0, -llr[y])
        self._tar = np.stack([np.bincount(spk1[y], tar, width),
                              np.bincount(spk1[y], minlength=width).astype(np.float64)])
        pairs = (spk1[~y], spk2[~y])
        self._non = [csr_matrix((w, pairs), shape=(width, width))
                     for w in (np.logaddexp(0.0, llr[~y]), np.ones(pairs[0].size))]

    def cllr(self, m: np.ndarray) -> np.ndarray:
        """``(draws,)`` Cllr from ``m`` of shape ``(speakers, draws)``."""
        tar_cost, tar_n = self._tar @ m
        non_cost, non_n = (((w @ m) * m).sum(axis=0) for w in self._non)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (tar_cost / tar_n + non_cost / non_n) / (2.0 * _LOG2)


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

    def as_json(self) -> dict:
        """results.json's ``intervals`` entry of a test set (:mod:`lowres.io.run_folder`)."""
        return {"method": "speaker_bootstrap", "level": self.level, "draws": self.draws,
                "seed": self.seed, "n_speakers": self.speakers,
                "degenerate_draws": self.degenerate,
                **{k: [v.low, v.high] for k, v in self.intervals.items()}}


def percentile_interval(values: np.ndarray, level: float) -> Interval:
    """The central ``level`` percentile interval of draws (NaN draws left out)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).all():
        return Interval(math.nan, math.nan)
    tails = [50.0 * (1.0 - level), 50.0 * (1.0 + level)]
    return Interval(*(float(q) for q in np.nanpercentile(values, tails)))


def speaker_bootstrap(scores, labels, paths1, paths2, draws: int = DRAWS, level: float = LEVEL,
                      seed: int = SEED, calibration: Calibration | None = None,
                      metrics: Collection[str] | None = None) -> BootstrapResult:
    """Speaker-bootstrap percentile intervals of one score list's metrics.

    ``paths1`` / ``paths2`` are the trial paths; their first component is the speaker.
    ``metrics``: as :meth:`SpeakerBootstrap.metrics` (default: EER, minDCF at 0.01 and
    0.05, min Cllr, and Cllr with a ``calibration``).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    boot = SpeakerBootstrap.from_paths(scores, labels, paths1, paths2, calibration)
    values = boot.metrics(boot.counts(draws, seed), metrics)
    intervals = {k: percentile_interval(v, level) for k, v in values.items()}
    degenerate = int(np.isnan(next(iter(values.values()))).sum())
    return BootstrapResult(intervals, level, draws, seed, boot.speakers.size, degenerate)
