"""Speaker-bootstrap intervals of run folders, from their score files: for runs evaluated
before results.json had intervals, for seed groups, and for paired comparisons
(:mod:`lowres.study.results.compare`).

Every score file of one trial list is resampled with the same speaker draws (the draws
depend only on the list's speakers, ``draws`` and ``seed``), so the draws of several runs
can be combined draw by draw: the mean over a seed group's runs, or the difference of two
runs.  :class:`ScoreDraws` keeps each score file's metrics per draw, in memory and, given
a folder, on disk (``lowres.results`` caches them in ``<out>/intervals/``, never in a run
folder), keyed by the file's path, size and time and the draws.

:func:`add_intervals` completes results.csv (EER columns in %):

* ``lo_<column>`` / ``hi_<column>`` of each EER and minDCF column where results.json had
  no interval (its score file's, at ``level``);
* ``seeds_lo_<column>`` / ``seeds_hi_<column>`` of each EER column: the interval of the
  mean EER of the run's seed group, the runs of one grid point that finished with that EER
  (every seed's scores under the same draws, the mean per draw, then its percentiles); for
  a group of one, the run's own interval.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from lowres.io.atomic import atomic_path
from lowres.io.progress import progress
from lowres.io.run_folder import eval_folder, read_results
from lowres.scoring.bootstrap import DRAWS, LEVEL, SEED, SpeakerBootstrap, percentile_interval
from lowres.scoring.calibration import Calibration
from lowres.scoring.trials import read_scores
from lowres.study.results.frame import HPARAM_KEYS, INTERVAL_PREFIXES, eer_column

__all__ = ["FRAME_METRICS", "SEED_GROUP_COLUMNS", "Draws", "ScoreDraws", "add_intervals",
           "mean_draws", "score_file"]

logger = logging.getLogger(__name__)

# The metrics results.csv has columns of (the best checkpoint's raw scores)
FRAME_METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05")
# The frame columns of a grid point: runs equal in all of them differ only in their seed
SEED_GROUP_COLUMNS = ("grid", "model", "subset", "tag",
                      *[k for k in HPARAM_KEYS if k not in ("seed", "model_name", "subset")],
                      "averaged")
_KINDS = (("best", False), ("best", True), ("averaged", False), ("averaged", True))


class Draws(NamedTuple):
    """One score file's metrics on the whole list (``point``) and per speaker draw."""

    values: dict[str, np.ndarray]
    point: dict[str, float]
    trials: str  # fingerprint of the trial list: labels and paths, in order
    n_trials: int


def score_file(run: str | os.PathLike, test_set: str, checkpoint: str = "best",
               as_norm: bool = False) -> tuple[Path, Calibration | None] | None:
    """A run's score file of ``test_set`` and the calibration of its scores (None without
    one), as its results.json names them; None when it names none or the file is missing."""
    results = read_results(run, checkpoint) or {}
    entry = (results.get("test_sets") or {}).get(test_set)
    calibration = results.get("calibration")
    if as_norm:
        entry = entry.get("as_norm") if isinstance(entry, dict) else None
        calibration = calibration.get("as_norm") if isinstance(calibration, dict) else None
    if not isinstance(entry, dict) or not entry.get("scores"):
        return None
    path = eval_folder(run, checkpoint) / entry["scores"]
    if not path.is_file():
        return None
    return path, Calibration.from_dict(calibration) if isinstance(calibration, dict) else None


def _fingerprint(scores: pd.DataFrame) -> str:
    trials = pd.util.hash_pandas_object(scores[["label", "path1", "path2"]], index=False)
    return hashlib.sha1(trials.to_numpy().tobytes()).hexdigest()


class ScoreDraws:
    """Metrics per speaker draw of score files, each file scored once (``cache``: a folder
    that keeps them across calls)."""

    def __init__(self, draws: int = DRAWS, seed: int = SEED,
                 cache: str | os.PathLike | None = None) -> None:
        self.draws, self.seed = draws, seed
        self.cache = Path(cache) if cache is not None else None
        self._memory: dict[str, Draws] = {}

    def of(self, path: str | os.PathLike, metrics: Sequence[str] = FRAME_METRICS,
           calibration: Calibration | None = None) -> Draws:
        """The draws of score file ``path`` (``label score path1 path2``); ``calibration``
        gives its LLRs for ``cllr``."""
        path = Path(path).resolve()
        stat = path.stat()
        key = hashlib.sha1(repr((str(path), stat.st_size, stat.st_mtime_ns, self.draws,
                                 self.seed, tuple(metrics), calibration)).encode()).hexdigest()
        if key in self._memory:
            return self._memory[key]
        stored = self.cache / f"{key}.npz" if self.cache is not None else None
        if stored is not None and stored.is_file():
            with np.load(stored) as f:
                found = Draws({m: f[f"draws_{m}"] for m in metrics},
                              {m: float(f[f"point_{m}"]) for m in metrics},
                              str(f["trials"]), int(f["n_trials"]))
        else:
            found = self._compute(path, metrics, calibration)
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(stored) as tmp, open(tmp, "wb") as f:
                    np.savez(f, trials=found.trials, n_trials=found.n_trials,
                             **{f"draws_{m}": v for m, v in found.values.items()},
                             **{f"point_{m}": v for m, v in found.point.items()})
        self._memory[key] = found
        return found

    def _compute(self, path: Path, metrics: Sequence[str],
                 calibration: Calibration | None) -> Draws:
        scores = read_scores(path)
        boot = SpeakerBootstrap.from_paths(scores.score.to_numpy(), scores.label.to_numpy(),
                                           scores.path1.to_numpy(), scores.path2.to_numpy(),
                                           calibration)
        values = boot.metrics(boot.counts(self.draws, self.seed), metrics)
        point = boot.metrics(np.ones((1, boot.speakers.size)), metrics)  # the list itself
        return Draws(values, {m: float(v[0]) for m, v in point.items()}, _fingerprint(scores),
                     len(scores))


def mean_draws(found: Sequence[Draws], metric: str) -> tuple[float, np.ndarray]:
    """The mean over runs (a seed group) of ``metric`` on the whole list and per draw.

    Raises ValueError when the runs were tested on different trial lists: their draws are
    then not the same speakers."""
    if len({d.trials for d in found}) > 1:
        raise ValueError("their trial lists differ ("
                         + " / ".join(str(d.n_trials) for d in found) + " trials)")
    return (float(np.mean([d.point[metric] for d in found])),
            np.mean([d.values[metric] for d in found], axis=0))


def add_intervals(frame: pd.DataFrame, root: str | os.PathLike, source: ScoreDraws,
                  level: float = LEVEL) -> pd.DataFrame:
    """``frame`` (:func:`lowres.study.results.frame.collect` of ``root``) with the interval
    columns of the module docstring added."""
    if frame.empty:
        return frame
    frame = frame.copy()
    tests = [c.removeprefix("eer_pct_") for c in frame.columns
             if c.startswith("eer_pct_") and c != "eer_pct_val"]
    columns = {eer_column(t, *kind): (t, *kind) for t in tests for kind in _KINDS}
    columns = {c: v for c, v in columns.items() if c in frame}
    finished = frame["status"] == "finished"

    def has(index, column) -> bool:
        return column in frame and not pd.isna(frame.at[index, column])

    # The runs' own intervals missing from results.json.
    wanted = {(i, *columns[c]) for c in columns for i in frame.index[finished]
              if has(i, c) and not has(i, f"lo_{c}")}
    groups = _seed_groups(frame)
    for rows in groups:
        for c in columns:
            valid = [i for i in rows if finished[i] and has(i, c)]
            if len(valid) > 1:
                wanted |= {(i, *columns[c]) for i in valid}
    found = {}
    for i, test, checkpoint, as_norm in progress(sorted(wanted), desc="speaker bootstrap",
                                                 unit="list", disable=not wanted):
        run = Path(root) / frame.at[i, "run"]
        where = score_file(run, test, checkpoint, as_norm)
        if where is None:
            continue
        try:
            found[i, test, checkpoint, as_norm] = source.of(where[0])
        except ValueError as err:
            logger.warning("%s: no interval of %s: %s", run, where[0].name, err)
    for (i, test, checkpoint, as_norm), draws in found.items():
        column = eer_column(test, checkpoint, as_norm)
        if not has(i, f"lo_{column}"):
            metrics = {column: "eer"} if (checkpoint, as_norm) != ("best", False) else {
                column: "eer", f"min_dcf_0.01_{test}": "min_dcf_0.01",
                f"min_dcf_0.05_{test}": "min_dcf_0.05"}
            for col, metric in metrics.items():
                low, high = percentile_interval(draws.values[metric], level)
                scale = 100.0 if metric == "eer" else 1.0
                frame.loc[i, f"lo_{col}"], frame.loc[i, f"hi_{col}"] = scale * low, scale * high
    for rows in groups:
        for c, (test, checkpoint, as_norm) in columns.items():
            valid = [i for i in rows if finished[i] and has(i, c)]
            low = high = math.nan
            if len(valid) == 1 and has(valid[0], f"lo_{c}"):
                low, high = frame.at[valid[0], f"lo_{c}"], frame.at[valid[0], f"hi_{c}"]
            elif len(valid) > 1 and all((i, test, checkpoint, as_norm) in found for i in valid):
                try:
                    _, values = mean_draws([found[i, test, checkpoint, as_norm] for i in valid],
                                           "eer")
                except ValueError as err:
                    logger.warning("no seed-group interval of %s for %s: %s", c,
                                   ", ".join(frame.loc[valid, "run"]), err)
                else:
                    low, high = (100.0 * v for v in percentile_interval(values, level))
            if not math.isnan(low):
                frame.loc[rows, f"seeds_lo_{c}"], frame.loc[rows, f"seeds_hi_{c}"] = low, high
    first = [c for c in frame.columns if not c.startswith(INTERVAL_PREFIXES)]
    return frame[first + sorted(c for c in frame.columns if c.startswith(INTERVAL_PREFIXES))]


def _seed_groups(frame: pd.DataFrame) -> list[list]:
    """Index lists of the runs that differ only in their seed: a grid point (its folder
    layout says so); every run outside the grids alone."""
    keys = [c for c in SEED_GROUP_COLUMNS if c in frame]
    in_grid = frame["grid"].astype(str) != ""
    groups = [list(g.index) for _, g in frame[in_grid].astype({k: str for k in keys})
              .groupby(keys, sort=False, dropna=False)]
    return groups + [[i] for i in frame.index[~in_grid]]
