"""Paired comparisons of runs or seed groups on the same trials.

    python -m lowres.results compare A B [A2 B2 ...] [--test_sets original [hard ...]]
        [--metric eer [min_dcf_0.01 ...]] [--checkpoint best] [--as_norm]
        [--interval_level 0.95] [--interval_draws 1000] [--interval_seed 0]

The positional arguments are taken two at a time: ``A B`` is one pair, ``A B C D`` two
(A against B, C against D).  A side is a run folder, or a quoted glob pattern of run
folders that differ only in their seed, a seed group scored by its mean over the seeds
(e.g. ``'runs/steps/ecapa_tiny_few/lr5.62e-03_steps50000_seed*'``).  Each pair is compared
on every test set and metric asked for (default: VoxCeleb1-O, EER), from the score files of
the ``checkpoint`` (raw, or after AS-norm with ``--as_norm``).

Both sides are scored under the same speaker draws, so each draw gives a difference
(:mod:`lowres.scoring.paired`): the printed interval is that of ``A - B`` (EER in % points),
the p-value two-sided.  All the comparisons of one command are one family: a difference
holds when its Holm-adjusted p-value is below ``1 - interval_level``.  Sides tested on
different trial lists (or a group whose runs differ in more than their seed) are refused:
one line on stderr, exit 2.  From Python: :func:`compare` (one comparison) and
:func:`compare_all` (a family).  docs/intervals.md explains the method.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from lowres.io.lists import test_set_names
from lowres.io.run_folder import hyperparams_path, is_finished, is_run_folder
from lowres.scoring.bootstrap import DRAWS, LEVEL, METRICS, SEED, Interval
from lowres.scoring.paired import holm, paired_difference
from lowres.study.results.frame import read_hparams
from lowres.study.results.intervals import Draws, ScoreDraws, mean_draws, score_file

__all__ = ["Comparison", "compare", "compare_all", "main", "seed_group"]

Side = str | os.PathLike | Sequence[str | os.PathLike]


class Comparison(NamedTuple):
    """One metric of side ``a`` against side ``b`` on one test set; EER in %."""

    a: str
    b: str
    test_set: str
    metric: str
    a_value: float  # on the whole list (a seed group: the mean over its seeds)
    b_value: float
    diff: float  # a_value - b_value
    interval: Interval  # of the difference, over the draws
    p: float  # two-sided bootstrap p-value
    p_holm: float  # Holm-adjusted over the family (p itself for one comparison)
    family: int  # comparisons in the family
    level: float

    @property
    def holds(self) -> bool:
        """The difference holds after Holm at ``level``."""
        return self.p_holm < 1.0 - self.level

    @property
    def verdict(self) -> str:
        """One sentence, e.g. "A below B by 9.20 [6.01, 12.10] points, holds after Holm
        over 9 comparisons"."""
        digits, unit = (2, " points") if self.metric == "eer" else (3, "")
        low, high = self.interval
        if not self.holds:
            holm_note = (f", {self.p_holm:.3g} after Holm over {self.family} comparisons"
                         if self.family > 1 else "")
            return (f"{self.a} and {self.b} cannot be separated: {self.a} - {self.b} = "
                    f"{self.diff:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{unit} "
                    f"(p {self.p:.3g}{holm_note})")
        side, gap, (low, high) = (("below", -self.diff, (-high, -low)) if self.diff < 0
                                  else ("above", self.diff, (low, high)))
        holds = (f"holds after Holm over {self.family} comparisons (p {self.p:.3g}, "
                 f"adjusted {self.p_holm:.3g})" if self.family > 1 else f"holds (p {self.p:.3g})")
        return (f"{self.a} {side} {self.b} by {gap:.{digits}f} [{low:.{digits}f}, "
                f"{high:.{digits}f}]{unit}, {holds}")


def seed_group(runs: Sequence[str | os.PathLike]) -> list[Path]:
    """``runs`` as run folders, checked to differ only in their seed: their hyperparams.yaml
    are equal once each run's seed (wherever it is written, e.g. in its folder's name) reads
    ``<seed>``.  Raises ValueError naming a key that differs."""
    folders = sorted(Path(r) for r in runs)
    if not folders:
        raise ValueError("no run folder")
    for folder in folders:
        if not is_run_folder(folder):
            raise ValueError(f"{folder} is not a run folder")
    if len(folders) == 1:
        return folders
    values = []
    for folder in folders:
        hp = read_hparams(hyperparams_path(folder))
        if "seed" not in hp:
            raise ValueError(f"{folder}: no seed in its hyperparams.yaml, so it cannot be "
                             "grouped with other seeds")
        own = re.compile(rf"(?<!\d){re.escape(str(hp.pop('seed')))}(?!\d)")
        values.append({k: own.sub("<seed>", v) if isinstance(v, str) else v
                       for k, v in hp.items()})
    for key in sorted(set().union(*values)):
        seen = [v.get(key) for v in values]
        if any(s != seen[0] for s in seen):
            raise ValueError(f"{folders[0]} and the other runs of the group differ in more "
                             f"than their seed: {key} is {seen[0]!r} vs "
                             f"{next(s for s in seen if s != seen[0])!r}")
    return folders


def _side(side: Side) -> tuple[str, list[Path]]:
    """The label and run folders of one side: a run folder, a glob pattern of run folders,
    or a sequence of them (a seed group)."""
    if isinstance(side, (str, os.PathLike)):
        text = os.fspath(side)
        if re.search(r"[*?[]", text):  # a glob pattern
            found = sorted(p for p in glob.glob(text) if Path(p).is_dir())
            if not found:
                raise ValueError(f"{text}: no run folder matches")
            # a grid still running: its seeds that have no results yet cannot be compared
            unfinished = [p for p in found if is_run_folder(p) and not is_finished(p)]
            if len(unfinished) == len(found):
                raise ValueError(f"{text}: none of its {len(found)} run(s) is finished")
            if unfinished:
                print(f"{text}: left out {len(unfinished)} unfinished run(s): "
                      f"{', '.join(unfinished)}", file=sys.stderr)
            runs = seed_group([p for p in found if p not in unfinished])
            return f"{text} ({len(runs)} seeds)", runs
        return text, seed_group([text])
    runs = seed_group(side)
    return (str(runs[0]) if len(runs) == 1
            else f"{os.path.commonpath(runs)} ({len(runs)} seeds)"), runs


def _draws(source: ScoreDraws, run: Path, test_set: str, checkpoint: str, as_norm: bool,
           metrics: Sequence[str]) -> Draws:
    where = score_file(run, test_set, checkpoint, as_norm)
    if where is None:
        raise ValueError(f"{run}: no {test_set} score file of its {checkpoint} checkpoint"
                         f"{' after AS-norm' if as_norm else ''} (not evaluated on it?)")
    path, calibration = where
    if "cllr" in metrics and calibration is None:
        raise ValueError(f"{run}: its results.json has no calibration, so no Cllr")
    return source.of(path, metrics, calibration)


def compare_all(pairs: Sequence[tuple[Side, Side]], test_sets: Sequence[str] = ("original",),
                metrics: Sequence[str] = ("eer",), checkpoint: str = "best",
                as_norm: bool = False, level: float = LEVEL, draws: int = DRAWS,
                seed: int = SEED, source: ScoreDraws | None = None) -> list[Comparison]:
    """Every pair on every test set and metric, Holm-adjusted as one family.

    Raises ValueError when two sides (or the runs of a group) were tested on different
    trial lists, a group's runs differ in more than their seed, or a score file is missing.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; one of {', '.join(METRICS)}")
    source = source or ScoreDraws(draws, seed)
    if (source.draws, source.seed) != (draws, seed):
        raise ValueError(f"source draws {source.draws} / seed {source.seed} are not "
                         f"{draws} / {seed}")
    found = []
    for a, b in pairs:
        (label_a, runs_a), (label_b, runs_b) = _side(a), _side(b)
        for test in test_sets:
            sides = []
            for label, runs in ((label_a, runs_a), (label_b, runs_b)):
                group = [_draws(source, r, test, checkpoint, as_norm, metrics) for r in runs]
                if len({d.trials for d in group}) > 1:
                    raise ValueError(f"{label}: its runs were tested on different {test} "
                                     "trial lists")
                sides.append(group)
            if sides[0][0].trials != sides[1][0].trials:
                raise ValueError(f"{label_a} and {label_b} were tested on different {test} "
                                 f"trial lists ({sides[0][0].n_trials} vs "
                                 f"{sides[1][0].n_trials} trials): a paired comparison "
                                 "needs the same trials")
            for metric in metrics:
                scale = 100.0 if metric == "eer" else 1.0
                (pa, va), (pb, vb) = (mean_draws(s, metric) for s in sides)
                paired = paired_difference(scale * va, scale * vb, scale * pa, scale * pb,
                                           level)
                found.append((label_a, label_b, test, metric, scale * pa, scale * pb, paired))
    adjusted = holm([f[-1].p for f in found])
    return [Comparison(*f[:-1], f[-1].diff, f[-1].interval, f[-1].p, q, len(found), level)
            for f, q in zip(found, adjusted, strict=True)]


def compare(run_a: Side, run_b: Side, test_set: str = "original", metric: str = "eer",
            **kwargs) -> Comparison:
    """One paired comparison (a family of one); ``kwargs`` as :func:`compare_all`.  Its
    ``diff``, ``interval``, ``p`` and ``verdict`` say whether ``run_a`` and ``run_b``
    (run folders or seed groups) can be told apart on ``test_set``."""
    return compare_all([(run_a, run_b)], [test_set], [metric], **kwargs)[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m lowres.results compare``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m lowres.results compare",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sides", nargs="+", metavar="RUN_OR_GROUP",
                        help="pairs: A B [A2 B2 ...]; a group is a quoted glob pattern")
    parser.add_argument("--test_sets", nargs="+", default=["original"],
                        help="original, extended, hard (default original)")
    parser.add_argument("--metric", nargs="+", default=["eer"], choices=METRICS,
                        help="default eer")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last", "averaged"))
    parser.add_argument("--as_norm", action="store_true", help="the scores after AS-norm")
    parser.add_argument("--interval_level", type=float, default=LEVEL)
    parser.add_argument("--interval_draws", type=int, default=DRAWS)
    parser.add_argument("--interval_seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    try:
        if len(args.sides) % 2:
            raise ValueError(f"{len(args.sides)} runs or groups: give them in pairs (A B "
                             "[A2 B2 ...])")
        if args.interval_draws < 1 or not 0 < args.interval_level < 1:
            raise ValueError("--interval_draws must be at least 1 and --interval_level "
                             "between 0 and 1")
        pairs = list(zip(args.sides[::2], args.sides[1::2], strict=True))
        found = compare_all(pairs, test_set_names(args.test_sets), args.metric,
                            args.checkpoint, args.as_norm, args.interval_level,
                            args.interval_draws, args.interval_seed)
    except ValueError as err:
        print(f"python -m lowres.results compare: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(found)} comparison(s); speaker bootstrap, {args.interval_draws} draws (seed "
          f"{args.interval_seed}), {100 * args.interval_level:g} % intervals; Holm over all "
          f"{len(found)} at alpha {1 - args.interval_level:.3g}")
    for c in found:
        value = "{:.2f}" if c.metric == "eer" else "{:.3f}"
        print(f"{c.test_set} {c.metric}: {c.a} {value.format(c.a_value)}, {c.b} "
              f"{value.format(c.b_value)}: {c.verdict}")
    return 0
