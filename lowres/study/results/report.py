"""Collect grid runs into a table and draw the study's figures.

    python -m lowres.results RUNS_ROOT [--out DIR]
    python -m lowres.results compare A B [A2 B2 ...] [--test_sets ...] [--metric eer]

Every run folder below RUNS_ROOT (one with hyperparams.yaml, train_log.txt or
eval/) becomes one row of ``results.csv``: its grid point (from the folder
layout of lowres/study/grids/runs.py, else from hyperparams.yaml), its status, whether
it diverged (``diverged``: the verdict of its results.json, written by the evaluation
when training stopped at a non-finite loss or no validation had a finite EER; for a run
without one, a NaN/inf loss in train_log.txt), and per test
set the EER (in %), minDCF (p_target 0.01 and 0.05) and number of trials of the
best checkpoint (eval/best/results.json), each with its speaker-bootstrap interval
(``lo_<column>``, ``hi_<column>``: from results.json, or for runs evaluated before it had
them, from the score files, cached in ``<out>/intervals/``), and the interval of each
EER's seed group (``seeds_lo_<column>``, ``seeds_hi_<column>``: the runs of a grid point,
their mean EER under the same speaker draws; lowres.study.results.intervals,
docs/intervals.md).  ``results.md`` holds the grids as Markdown tables (mean ± sd over
seeds [interval], n = number of seeds), the demo's checks (paired comparisons,
lowres.study.results.demo_checks) and the lists of diverged and unfinished runs; the
figures (PNG and PDF; error bars: thin, the interval, thick, ± sd over seeds):

* ``lr.*``: EER vs learning rate, one panel per subset, one line per model
  (naive and detailed LR grid together; VoxCeleb1-O by default),
* ``steps.*``: EER vs max_steps, mean ± sd over seeds and every seed,
* ``ablation.*``: the wav2vec2 ablation, bars = mean, dots = seeds.
* ``modern.*`` (the modern grid, beyond the study): EER per step of the toolbox (the
  study's recipe, + augmentation, + checkpoint averaging & large-margin stage, + AS-norm),
  one panel per model, one line per subset, mean ± sd over seeds.
* ``adaptation.*``, ``adaptation_demo.*`` (the adaptation grids, beyond the study): EER of
  each way to adapt wav2vec2 (at its lr of lowest validation EER) against its trainable
  parameters (parameters.json; log axis), one panel per subset.
* ``demo.*`` (``make demo``): EER per model x tiny subset next to the untrained model
  (``max_steps`` 0), one panel per test set; the demo's runs are known by their folders
  (``<model>_<subset>[/<start>]/trained`` or ``untrained``), whatever RUNS_ROOT is called.
* ``det.*`` (only with ``--det [RUN ...]``): DET curves (probit axes) of the named runs,
  or of every run with score files, from the best checkpoint's score files (AS-norm
  dashed): a column per test set, a row per model with at most six runs (more: several
  rows), one colour per run within a panel and the legend below it.

Diverged runs are kept: marked "div." in the tables and drawn as red crosses
(at their EER when they were evaluated, else at the top of the panel).

``compare``: paired comparisons of runs or seed groups on the same trials, Holm-adjusted
(:mod:`lowres.study.results.compare`; ``python -m lowres.results compare --help``).
"""



from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lowres.scoring.bootstrap import DRAWS, LEVEL, SEED
from lowres.study.results import compare
from lowres.study.results.figures import (
    plot_ablation,
    plot_adaptation,
    plot_demo,
    plot_det,
    plot_lr,
    plot_modern,
    plot_steps,
)
from lowres.study.results.frame import collect
from lowres.study.results.intervals import ScoreDraws, add_intervals
from lowres.study.results.markdown import write_markdown

__all__ = ["main"]

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m lowres.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_root", type=Path)
    parser.add_argument("--out", type=Path, help="output folder (default RUNS_ROOT/results)")
    parser.add_argument("--lr_test_set", help="test set of the LR tables/figure "
                        "(default original)")
    parser.add_argument("--test_set", help="test set of the steps, ablation, modern and "
                        "adaptation tables/figures (default hard, else original)")
    parser.add_argument("--det", nargs="*", metavar="RUN",
                        help="also draw det.png/pdf: DET curves of these runs (folders below "
                        "RUNS_ROOT, as in results.csv; none named: every run with score files)")
    parser.add_argument("--no_intervals", action="store_true",
                        help="no speaker-bootstrap intervals beyond those of results.json, and "
                        "no demo checks")
    parser.add_argument("--interval_level", type=float, default=LEVEL,
                        help=f"of the intervals computed here (default {LEVEL})")
    parser.add_argument("--interval_draws", type=int, default=DRAWS,
                        help=f"speaker draws of the intervals computed here (default {DRAWS})")
    parser.add_argument("--interval_seed", type=int, default=SEED,
                        help=f"seed of those draws (default {SEED})")
    args = parser.parse_args(argv)
    if not args.runs_root.is_dir():
        parser.error(f"{args.runs_root} is not a folder")
    out = args.out or args.runs_root / "results"
    out.mkdir(parents=True, exist_ok=True)
    frame = collect(args.runs_root)
    source = None
    if not args.no_intervals:
        source = ScoreDraws(args.interval_draws, args.interval_seed, cache=out / "intervals")
        frame = add_intervals(frame, args.runs_root, source, args.interval_level)
    frame.to_csv(out / "results.csv", index=False)
    write_markdown(frame, out / "results.md", args.lr_test_set, args.test_set,
                   args.runs_root, source, args.interval_level)
    written = [out / "results.csv", out / "results.md"]
    if not frame.empty:
        written += plot_lr(frame, out, args.lr_test_set)
        written += plot_steps(frame, out, args.test_set)
        written += plot_ablation(frame, out, args.test_set)
        written += plot_modern(frame, out, args.test_set)
        written += plot_adaptation(frame, out, args.test_set)
        written += plot_demo(frame, out)
    if args.det is not None:
        try:
            written += plot_det(args.runs_root, out, args.det or None)
        except ValueError as err:
            parser.error(str(err))
    n_div = int(frame["diverged"].sum()) if not frame.empty else 0
    print(f"{len(frame)} runs ({n_div} diverged) -> " + ", ".join(str(p) for p in written))
    return 0
