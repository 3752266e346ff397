"""``results.md``: the table of every grid with runs, the demo's section with its checks
(which ``make demo`` also prints), and the lists of other, diverged and unfinished runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lowres.io.lists import TEST_SET_LABELS
from lowres.study.grids.definitions import DEMO_SUBSETS
from lowres.study.results.frame import as_float
from lowres.study.results.tables import (
    DEMO_COLUMNS,
    ablation_table,
    demo_cells,
    demo_label,
    demo_rows,
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

__all__ = ["demo_checks", "demo_section", "write_markdown"]

def _eers(cells: dict, key: tuple[str, str], col: str, columns=DEMO_COLUMNS) -> dict:
    return {c: as_float(cells[key, c].get(col)) if (key, c) in cells else math.nan
            for c in columns}


def demo_checks(frame: pd.DataFrame, test_set: str = "original") -> list[str]:
    """What the demo is meant to show, as measured on `test_set`: per row, every subset
    trains below the untrained model's EER, and tiny_many_high beats tiny_many_low (the
    study's ordering); then the pre-trained wav2vec2 against its random-init counterpart
    on each subset (the study's main claim) and against x-vector and ECAPA-TDNN on
    tiny_few (the study's ordering); "incomplete" while a cell has no EER."""
    cells = demo_cells(frame)
    col = f"eer_pct_{test_set}"
    out = []
    for key in demo_rows(cells):
        label = demo_label(key, cells)
        eers = _eers(cells, key, col)
        if any(math.isnan(v) for v in eers.values()):
            out.append(f"{label}: incomplete")
            continue
        base = eers.pop("untrained")
        worst = max(eers.values())
        below = ("every subset below untrained" if worst < base
                 else "NOT every subset below untrained")
        order = " < ".join(f"{s} {v:.2f}" for s, v in sorted(eers.items(), key=lambda kv: kv[1]))
        high = ("better than" if eers["tiny_many_high"] < eers["tiny_many_low"]
                else "NOT better than")
        out.append(f"{label}: untrained {base:.2f}, trained {min(eers.values()):.2f}-"
                   f"{worst:.2f} ({below}, by {base - worst:.2f} points at least); "
                   f"tiny_many_high {high} tiny_many_low; order: {order}")
    keys = demo_rows(cells)
    pre, rand = ("wav2vec2", "pretrained"), ("wav2vec2", "random_init")
    if pre in keys and rand in keys:
        a, b = _eers(cells, pre, col, DEMO_SUBSETS), _eers(cells, rand, col, DEMO_SUBSETS)
        if any(math.isnan(v) for v in (*a.values(), *b.values())):
            out.append("pre-trained vs random-init wav2vec2: incomplete")
        else:
            better = all(a[s] < b[s] for s in DEMO_SUBSETS)
            out.append(f"pre-trained wav2vec2 {'better' if better else 'NOT better'} than "
                       "random init on every subset: "
                       + ", ".join(f"{s} {a[s]:.2f} vs {b[s]:.2f}" for s in DEMO_SUBSETS))
        others = [k for k in keys if k[0] in ("xvector", "ecapa") and (k, "tiny_few") in cells]
        few = as_float(cells[pre, "tiny_few"].get(col)) if (pre, "tiny_few") in cells else math.nan
        if others and not math.isnan(few):
            rivals = {demo_label(k, cells): as_float(cells[k, "tiny_few"].get(col)) for k in others}
            best = all(few < v for v in rivals.values())
            out.append(f"tiny_few: pre-trained wav2vec2 {few:.2f} "
                       f"{'better than' if best else 'NOT better than'} "
                       + " / ".join(f"{n} {v:.2f}" for n, v in rivals.items())
                       + " (the study: wav2vec2 best)")
    return out


def demo_section(frame: pd.DataFrame) -> list[str]:
    """results.md's demo section, which ``make demo`` also prints: per test set the table
    and its checks."""
    demo = frame[frame["grid"] == "demo"]
    if demo.empty:
        return []
    lines = ["## Demo: trained on each tiny subset vs untrained (EER % / minDCF at "
             "p_target 0.05)", ""]
    for test in tests_with_results(demo):
        lines += [f"### {TEST_SET_LABELS[test]}", "", *demo_table(demo, test), "",
                  "Checks (EER %, lower is better):", "",
                  *[f"- {line}" for line in demo_checks(demo, test)], ""]
    return lines


def write_markdown(frame: pd.DataFrame, path: Path, lr_test: str | None = None,
                   steps_test: str | None = None) -> None:
    """results.md; `lr_test` is the LR tables' test set (None: original), `steps_test`
    that of the others (None: hard, else original)."""
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
    lines += demo_section(frame)
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
