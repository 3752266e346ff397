"""``results.md``: the table of every grid with runs, the demo's section with its checks
(which ``make demo`` also prints), and the lists of other, diverged and unfinished runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowres.io.lists import TEST_SET_LABELS
from lowres.scoring.bootstrap import LEVEL
from lowres.study.grids.definitions import ADAPTATION_GRIDS
from lowres.study.results.demo_checks import demo_checks
from lowres.study.results.frame import as_float
from lowres.study.results.intervals import ScoreDraws
from lowres.study.results.tables import (
    ablation_table,
    adaptation_lr_table,
    adaptation_table,
    demo_table,
    fmt_interval,
    grid_rows,
    lr_table,
    markdown_table,
    modern_table,
    steps_table,
    tests_with_results,
    with_mean_columns,
)

__all__ = ["demo_section", "write_markdown"]


def demo_section(frame: pd.DataFrame, root: str | Path | None = None,
                 source: ScoreDraws | None = None, level: float = LEVEL) -> list[str]:
    """results.md's demo section, which ``make demo`` also prints: per test set the table
    and its checks (:mod:`lowres.study.results.demo_checks`: ``frame``'s runs are folders
    below ``root``, ``source`` gives their speaker draws; without both, no checks)."""
    demo = frame[frame["grid"] == "demo"]
    if demo.empty:
        return []
    lines = ["## Demo: trained on each tiny subset vs untrained (EER % / minDCF at "
             "p_target 0.05)", ""]
    for test in tests_with_results(demo):
        lines += [f"### {TEST_SET_LABELS[test]}", "", *demo_table(demo, test), ""]
        if source is None or root is None:
            lines += ["Checks: none, they need the speaker draws (`python -m lowres.results` "
                      "without --no_intervals).", ""]
            continue
        lines += [f"Checks (EER %, lower is better; paired speaker bootstrap, "
                  f"{source.draws} draws, {100 * level:g} % interval of the difference, "
                  "Holm over this test set's checks; docs/intervals.md):", "",
                  *[f"- {line}" for line in demo_checks(demo, root, source, test, level)],
                  ""]
    return lines


def _adaptation_section(frame: pd.DataFrame, grid: str, test_set: str | None) -> list[str]:
    """An adaptation grid's tables: per test set, each method at its chosen lr; then every
    lr on `test_set` (None: hard, else original)."""
    rows = grid_rows(frame, (grid,), test_set)
    if rows is None:
        return []
    lines = [f"## Adapting wav2vec2 with few labels ({grid} grid; not the study's)", "",
             "Per method and subset, the lr of lowest mean validation EER over the seeds "
             "(validation trials, not the tested ones) as \"lr: EER\".", ""]
    for test in tests_with_results(rows[0]):
        lines += [f"### EER %, {TEST_SET_LABELS[test]}", "",
                  *adaptation_table(frame, grid, test), ""]
    test = rows[1]
    return lines + [f"### Every learning rate (EER %, {TEST_SET_LABELS.get(test, test)})", "",
                    *adaptation_lr_table(frame, grid, test), ""]


def write_markdown(frame: pd.DataFrame, path: Path, lr_test: str | None = None,
                   steps_test: str | None = None, root: str | Path | None = None,
                   source: ScoreDraws | None = None, level: float = LEVEL) -> None:
    """results.md; `lr_test` is the LR tables' test set (None: original), `steps_test`
    that of the others (None: hard, else original); `root`, `source` and `level` as
    :func:`demo_section`."""
    lines = ["# Results", ""]
    if frame.empty:
        path.write_text("# Results\n\nNo runs found.\n")
        return
    counts = frame["status"].value_counts().to_dict()
    lines += [f"{len(frame)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f"; {int(frame['diverged'].sum())} diverged (non-finite loss or validation "
              "EER; kept and marked "
              "'div.'). EER in %, best checkpoint; mean ± sd over seeds [speaker-bootstrap "
              "interval of that mean, docs/intervals.md], (n) = seeds with results.", ""]
    for grid, title in (("naive_lr", "Naive LR grid"), ("detailed_lr", "Detailed LR grid")):
        if rows := grid_rows(frame, (grid,), lr_test, ("original",)):
            test = rows[1]
            lines += [f"## {title} (EER %, {TEST_SET_LABELS.get(test, test)})", ""]
            lines += lr_table(frame, grid, test) + [""]
    for grid, title, table in (("steps", "Steps", steps_table),
                               ("ablation", "wav2vec2 ablation", ablation_table)):
        if rows := grid_rows(frame, (grid,), steps_test):
            test = rows[1]
            lines += [f"## {title} (EER %, {TEST_SET_LABELS.get(test, test)})", ""]
            lines += table(frame, test) + [""]
    if (frame["grid"] == "modern").any():
        lines += ["## The modern toolbox on limited data (modern grid; not the study's)", "",
                  "Each step adds to the one before: the study's recipe; + augmentation "
                  "(MUSAN noise, music, babble, reverberation, speed perturbation); + a "
                  "large-margin stage from the augmented run, its last checkpoints averaged; "
                  "+ AS-norm of its scores.", ""]
        tests = tests_with_results(frame[frame["grid"] == "modern"])
        for test in tests:
            lines += [f"### EER %, {TEST_SET_LABELS[test]}", ""] + modern_table(frame, test) + [""]
        if len(tests) > 1:
            names = ", ".join(TEST_SET_LABELS[t] for t in tests)
            lines += [f"### EER %, mean of {names}", ""]
            lines += modern_table(with_mean_columns(frame, tests), "mean") + [""]
    for grid in ADAPTATION_GRIDS:
        lines += _adaptation_section(frame, grid, steps_test)
    lines += demo_section(frame, root, source, level)
    other = frame[frame["grid"] == ""]
    eer_cols = [c for c in frame.columns if c.startswith("eer_pct_")]
    if len(other):
        lines += ["## Other runs", ""]
        lines += markdown_table(["run", "status", *eer_cols], [
            [r["run"], r["status"] + (" (div.)" if r["diverged"] else "")]
            + [f"{r[c]:.2f}" + fmt_interval(as_float(r.get(f"lo_{c}")),
                                            as_float(r.get(f"hi_{c}")))
               if not pd.isna(r[c]) else "" for c in eer_cols]
            for _, r in other.iterrows()]) + [""]
    for title, mask in (("Diverged runs (non-finite loss or validation EER)",
                         frame["diverged"]),
                        ("Unfinished runs", frame["status"] != "finished")):
        if mask.any():
            lines += [f"## {title}", ""] + [f"- {r}" for r in frame[mask]["run"]] + [""]
    path.write_text("\n".join(lines))
