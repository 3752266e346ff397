"""The results' tables as Markdown lines, and the summaries behind them that the figures
share: mean ± sd over seeds per cell with the speaker-bootstrap interval of that mean
(results.csv's ``seeds_lo_`` / ``seeds_hi_`` columns), the order of models and subsets, the
test set shown.

Tables of the naive and the detailed LR grid, steps, the wav2vec2 ablation, and beyond the
study the modern grid, the adaptation grids and the demo.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from lowres.io.lists import TEST_SET_LABELS
from lowres.study.grids.definitions import (
    ABLATION_LABELS,
    ABLATION_VARIANTS,
    ADAPTATION_LABELS,
    ADAPTATION_METHODS,
    DEMO_STARTS,
    DEMO_SUBSETS,
    MODELS,
    SUBSETS,
)
from lowres.study.results.frame import as_float

__all__ = ["DEMO_COLUMNS", "MODEL_LABELS", "MODERN_STEPS", "AdaptationCell", "ablation_table",
           "adaptation_cells", "adaptation_lr_table", "adaptation_table", "best_lrs",
           "demo_cells", "demo_label", "demo_rows", "demo_table", "fmt_interval", "fmt_lr",
           "grid_rows",
           "lr_table", "markdown_table", "modern_stats", "modern_table", "ordered",
           "pick_test_set", "seed_stats", "steps_table", "tests_with_results",
           "with_mean_columns"]

MODEL_LABELS = {"xvector": "x-vector", "ecapa": "ECAPA-TDNN", "wav2vec2": "wav2vec2"}


def pick_test_set(frame: pd.DataFrame, preferred: str | None,
                  fallback: tuple[str, ...] = ("hard", "original")) -> str | None:
    """Name of the test set to show: `preferred` if given, else the first of `fallback`
    that has results, else any."""
    sets = [c.removeprefix("eer_pct_") for c in frame.columns if c.startswith("eer_pct_")]
    for name in ([preferred] if preferred else []) + list(fallback):
        if name in sets and frame[f"eer_pct_{name}"].notna().any():
            return name
    return sets[0] if sets else None


def grid_rows(frame: pd.DataFrame, grids: tuple[str, ...], test_set: str | None,
              fallback: tuple[str, ...] = ("hard", "original"),
              ) -> tuple[pd.DataFrame, str, str] | None:
    """The rows of these grids, the test set their table or figure shows and its EER column;
    None when the grids have no runs."""
    sub = frame[frame["grid"].isin(grids)]
    if sub.empty:
        return None
    test = pick_test_set(sub, test_set, fallback)
    return sub, test, f"eer_pct_{test}"


def tests_with_results(frame: pd.DataFrame) -> list[str]:
    """The VoxCeleb1 test sets (in O, E, H order) with at least one EER in `frame`."""
    return [t for t in TEST_SET_LABELS if f"eer_pct_{t}" in frame
            and frame[f"eer_pct_{t}"].notna().any()]


def ordered(values: Iterable[str], known: tuple[str, ...]) -> list[str]:
    """The non-empty `values` once each: those in `known` in its order, then the rest sorted."""
    values = [v for v in dict.fromkeys(values) if v]
    return [v for v in known if v in values] + sorted(v for v in values if v not in known)


def seed_stats(group: pd.DataFrame, col: str) -> dict:
    """Mean and sd of `col` over the finished runs of `group` (its seeds), n, the counts
    of its runs, diverged and unfinished ones, and the interval of the mean (low, high: NaN
    unless those runs share one, :func:`_seed_interval`)."""
    finished = group[group["status"] == "finished"]
    values = finished[col].to_numpy(dtype=float) if col in finished else np.array([])
    ok = values[~np.isnan(values)]
    low, high = _seed_interval(finished[~np.isnan(values)], col)
    return {
        "mean": float(ok.mean()) if ok.size else math.nan,
        "sd": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        "n": int(ok.size), "diverged": int(group["diverged"].sum()),
        "runs": len(group), "unfinished": int((group["status"] != "finished").sum()),
        "low": low, "high": high,
    }


def _seed_interval(runs: pd.DataFrame, col: str) -> tuple[float, float]:
    """The seed-group interval of `col` that all `runs` have (NaN if any lacks it or they
    are not one group)."""
    bounds = [f"seeds_lo_{col}", f"seeds_hi_{col}"]
    if runs.empty or not all(b in runs for b in bounds):
        return math.nan, math.nan
    found = runs[bounds].drop_duplicates()
    if len(found) != 1 or found.isna().any(axis=None):
        return math.nan, math.nan
    return float(found.iloc[0, 0]), float(found.iloc[0, 1])


def fmt_interval(low: float, high: float) -> str:
    """" [low, high]" (EER in %), or "" where there is none."""
    return "" if math.isnan(low) or math.isnan(high) else f" [{low:.2f}, {high:.2f}]"


def _cell(stats: dict, bold: bool = False) -> str:
    if stats["n"] == 0:
        text = "div." if stats["diverged"] else "—"
    else:
        text = f"{stats['mean']:.2f}"
        if stats["n"] > 1:
            text += f" ± {stats['sd']:.2f}"
        if bold:
            text = f"**{text}**"
        text += fmt_interval(stats["low"], stats["high"])
        if stats["runs"] > 1:
            text += f" ({stats['n']})"
        if stats["diverged"]:
            text += f" [{stats['diverged']} div.]"
    return text


def fmt_lr(lr: float) -> str:
    """1e-07 -> 1e-7, 0.00178 -> 1.78e-3, 1.782e-4 -> 1.782e-4."""
    mantissa, exponent = f"{lr:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def lr_table(frame: pd.DataFrame, grid: str, test_set: str) -> list[str]:
    """One row per model x subset, best EER in bold.  Columns are the lrs when all cells
    share them (naive grid), else the cell's own lrs in order with "lr: EER" entries."""
    sub = frame[frame["grid"] == grid]
    lrs = sorted(sub["lr"].dropna().unique())
    cells = [(m, s) for m in ordered(sub["model"], MODELS)
             for s in ordered(sub[sub["model"] == m]["subset"], SUBSETS)]
    per_cell = {c: sorted(sub[(sub["model"] == c[0]) & (sub["subset"] == c[1])]["lr"]
                          .dropna().unique()) for c in cells}
    shared = len(lrs) <= max((len(v) for v in per_cell.values()), default=0)
    rows = []
    for model, subset in cells:
        cell = sub[(sub["model"] == model) & (sub["subset"] == subset)]
        stats = {lr: seed_stats(cell[cell["lr"] == lr], f"eer_pct_{test_set}")
                 for lr in per_cell[model, subset]}
        means = [s["mean"] for s in stats.values() if s["n"]]
        best = min(means) if means else None
        row = [MODEL_LABELS.get(model, model), subset]
        if shared:
            row += [_cell(stats[lr], bold=stats[lr]["mean"] == best) if lr in stats else ""
                    for lr in lrs]
        else:
            row += [f"{fmt_lr(lr)}: {_cell(st, bold=st['mean'] == best)}"
                    for lr, st in stats.items()]
        rows.append(row)
    width = len(lrs) if shared else max((len(v) for v in per_cell.values()), default=0)
    rows = [r + [""] * (2 + width - len(r)) for r in rows]
    header = [fmt_lr(lr) for lr in lrs] if shared else [f"lr {i + 1}" for i in range(width)]
    return markdown_table(["model", "subset", *header], rows)


def steps_table(frame: pd.DataFrame, test_set: str) -> list[str]:
    """One row per model x subset (with its lr), one column per max_steps."""
    sub = frame[frame["grid"] == "steps"]
    steps = sorted(int(s) for s in sub["max_steps"].dropna().unique())
    rows = []
    for model in ordered(sub["model"], MODELS):
        for subset in ordered(sub[sub["model"] == model]["subset"], SUBSETS):
            cell = sub[(sub["model"] == model) & (sub["subset"] == subset)]
            lr = cell["lr"].dropna()
            rows.append([MODEL_LABELS.get(model, model), subset,
                         fmt_lr(lr.iloc[0]) if len(lr) else ""] + [
                _cell(seed_stats(cell[cell["max_steps"] == s], f"eer_pct_{test_set}"))
                for s in steps])
    return markdown_table(["model", "subset", "lr", *[f"{s // 1000}k" for s in steps]], rows)


def ablation_table(frame: pd.DataFrame, test_set: str) -> list[str]:
    """One row per ablation variant, one column per subset."""
    sub = frame[frame["grid"] == "ablation"]
    subsets = ordered(sub["subset"], SUBSETS)
    rows = []
    for tag in ordered(sub["tag"], tuple(ABLATION_VARIANTS)):
        rows.append([ABLATION_LABELS.get(tag, tag)] + [
            _cell(seed_stats(sub[(sub["tag"] == tag) & (sub["subset"] == s)],
                             f"eer_pct_{test_set}")) for s in subsets])
    return markdown_table(["variant", *subsets], rows)


# The modern grid's toolbox a step at a time: (label, stage run, EER column prefix). The
# last two steps are the large-margin stage's averaged checkpoints without / with AS-norm.
MODERN_STEPS = (
    ("study recipe", "study", "eer_pct_"),
    ("+ augmentation", "augment", "eer_pct_"),
    ("+ averaging & large margin", "large_margin", "averaged_eer_pct_"),
    ("+ AS-norm", "large_margin", "averaged_as_norm_eer_pct_"),
)


def modern_stats(frame: pd.DataFrame, model: str, subset: str, test_set: str) -> list[dict]:
    """seed_stats of each toolbox step (MODERN_STEPS) of one modern-grid cell."""
    cell = frame[(frame["grid"] == "modern") & (frame["model"] == model)
                 & (frame["subset"] == subset)]
    return [seed_stats(cell[cell["tag"] == tag], f"{prefix}{test_set}")
            for _, tag, prefix in MODERN_STEPS]


def with_mean_columns(frame: pd.DataFrame, tests: list[str]) -> pd.DataFrame:
    """`frame` plus ``<prefix>mean``: each toolbox step's EER averaged over `tests` (NaN
    when one of them is missing), so that modern_table(frame, "mean") tabulates it."""
    frame = frame.copy()
    for prefix in dict.fromkeys(prefix for _, _, prefix in MODERN_STEPS):
        cols = [f"{prefix}{t}" for t in tests]
        if all(c in frame for c in cols):
            frame[f"{prefix}mean"] = frame[cols].mean(axis=1, skipna=False)
    return frame


def modern_table(frame: pd.DataFrame, test_set: str) -> list[str]:
    """One row per model x subset, one column per toolbox step; the best step in bold."""
    sub = frame[frame["grid"] == "modern"]
    rows = []
    for model in ordered(sub["model"], MODELS):
        for subset in ordered(sub[sub["model"] == model]["subset"], SUBSETS):
            stats = modern_stats(frame, model, subset, test_set)
            means = [st["mean"] for st in stats if st["n"]]
            best = min(means) if means else None
            rows.append([MODEL_LABELS.get(model, model), subset] + [
                _cell(st, bold=st["n"] > 0 and st["mean"] == best) for st in stats])
    return markdown_table(["model", "subset", *[label for label, _, _ in MODERN_STEPS]], rows)


class AdaptationCell(NamedTuple):
    """One method x subset of an adaptation grid, at the method's chosen lr."""

    lr: float
    runs: pd.DataFrame  # the runs (seeds) at that lr
    stats: dict  # seed_stats of the EER column
    trainable: float  # mean trainable parameters of those runs (parameters.json), NaN without


def adaptation_cells(frame: pd.DataFrame, grid: str,
                     test_set: str) -> dict[tuple[str, str], AdaptationCell]:
    """(method, subset) -> its cell at the method's lr of lowest mean validation EER over the
    finished seeds (chosen on the validation trials, not the tested ones; by `test_set`'s
    EER where the cell's runs have no validation EER). A cell without a finished run keeps
    its lowest lr."""
    sub = frame[frame["grid"] == grid]
    col = f"eer_pct_{test_set}"
    cells = {}
    for (method, subset), cell in sub.groupby(["tag", "subset"]):
        pick = "eer_pct_val" if "eer_pct_val" in cell and cell["eer_pct_val"].notna().any() \
            else col
        by_lr = dict(list(cell.groupby("lr")))
        means = {lr: seed_stats(runs, pick)["mean"] for lr, runs in by_lr.items()}
        scored = {lr: mean for lr, mean in means.items() if not math.isnan(mean)}
        lr = min(scored, key=scored.get) if scored else min(by_lr)
        runs = by_lr[lr]
        trainable = runs["trainable_parameters"].mean() if "trainable_parameters" in runs \
            else math.nan
        cells[method, subset] = AdaptationCell(float(lr), runs, seed_stats(runs, col),
                                               float(trainable))
    return cells


def adaptation_table(frame: pd.DataFrame, grid: str, test_set: str) -> list[str]:
    """One row per method, one column per subset: the EER at the method's chosen lr
    (:func:`adaptation_cells`) as "lr: mean ± sd [interval] (n)"; each subset's best in
    bold."""
    cells = adaptation_cells(frame, grid, test_set)
    methods = ordered((m for m, _ in cells), ADAPTATION_METHODS)
    subsets = ordered((s for _, s in cells), SUBSETS)
    best = {s: min((c.stats["mean"] for (_, s2), c in cells.items()
                    if s2 == s and c.stats["n"]), default=None) for s in subsets}
    rows = []
    for method in methods:
        row = [ADAPTATION_LABELS.get(method, method)]
        for subset in subsets:
            cell = cells.get((method, subset))
            bold = cell is not None and cell.stats["n"] > 0 and cell.stats["mean"] == best[subset]
            row.append("" if cell is None else f"{fmt_lr(cell.lr)}: {_cell(cell.stats, bold)}")
        rows.append(row)
    return markdown_table(["method", *subsets], rows)


def adaptation_lr_table(frame: pd.DataFrame, grid: str, test_set: str) -> list[str]:
    """One row per method and lr, one column per subset: every grid point's EER."""
    sub = frame[frame["grid"] == grid]
    subsets = ordered(sub["subset"], SUBSETS)
    rows = []
    for method in ordered(sub["tag"], ADAPTATION_METHODS):
        runs = sub[sub["tag"] == method]
        for lr in sorted(runs["lr"].dropna().unique()):
            point = runs[runs["lr"] == lr]
            rows.append([ADAPTATION_LABELS.get(method, method), fmt_lr(lr)] + [
                _cell(seed_stats(point[point["subset"] == s], f"eer_pct_{test_set}"))
                if (point["subset"] == s).any() else "" for s in subsets])
    return markdown_table(["method", "lr", *subsets], rows)


DEMO_COLUMNS = ("untrained", *DEMO_SUBSETS)
START_LABELS = {"random_init": "random init", "pretrained": "pre-trained"}


def demo_cells(frame: pd.DataFrame) -> dict[tuple[tuple[str, str], str], pd.Series]:
    """The demo grid's runs: ((model, start), subset or "untrained") -> its row; start is
    the wav2vec2 run's tag (DEMO_STARTS) or "" (max_steps 0 = the untrained model of
    lowres.study.demo).  Only finished runs."""
    sub = frame[(frame["grid"] == "demo") & (frame["status"] == "finished")]
    cells = {}
    for _, row in sub.iterrows():
        untrained = as_float(row.get("max_steps")) == 0
        key = (row["model"], row.get("tag") or "")
        cells[key, "untrained" if untrained else row["subset"]] = row
    return cells


def demo_rows(cells: dict) -> list[tuple[str, str]]:
    """The table's rows in the study's model order, each model's starts in DEMO_STARTS order."""
    keys = {key for key, _ in cells}
    order = {start: i for i, start in enumerate(("", *DEMO_STARTS))}
    return sorted(keys, key=lambda k: (MODELS.index(k[0]) if k[0] in MODELS else len(MODELS),
                                       k[0], order.get(k[1], len(order))))


def demo_label(key: tuple[str, str], cells: dict, sep: str = " ") -> str:
    """A row's name in the demo's table, checks and figure: its wav2vec2 start, or
    "(random init)" for an untagged random-init run (``reset_weights``), so nobody takes a
    random-init wav2vec2 for a pre-trained one."""
    model, start = key
    name = MODEL_LABELS.get(model, model)
    if start:
        return f"{name}{sep}({START_LABELS.get(start, start)})"
    random_init = any(str(r.get("reset_weights")).lower() == "true"
                      for (k, _), r in cells.items() if k == key)
    return name + (f"{sep}(random init)" if random_init else "")


def demo_table(frame: pd.DataFrame, test_set: str = "original") -> list[str]:
    """Markdown rows (columns padded, so the table also reads in a terminal): one per
    model and start; EER % and minDCF (p_target 0.05; 0.01 needs far more trials than
    the demo's) untrained and per subset."""
    cells = demo_cells(frame)
    rows = []
    for key in demo_rows(cells):
        row = [demo_label(key, cells)]
        for col in DEMO_COLUMNS:
            r = cells.get((key, col))
            eer = as_float(r.get(f"eer_pct_{test_set}")) if r is not None else math.nan
            dcf = as_float(r.get(f"min_dcf_0.05_{test_set}")) if r is not None else math.nan
            row.append("—" if math.isnan(eer) else f"{eer:.2f} / {dcf:.3f}"
                       + (" (div.)" if r is not None and r["diverged"] else ""))
        rows.append(row)
    header = ["model", *DEMO_COLUMNS]  # cells: "EER % / minDCF", as the section title says
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = markdown_table([h.ljust(w) for h, w in zip(header, widths, strict=True)],
                           [[c.ljust(w) for c, w in zip(r, widths, strict=True)] for r in rows])
    lines[1] = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return lines


def best_lrs(frame: pd.DataFrame, test_set: str = "original",
             grids: tuple[str, ...] = ("naive_lr", "detailed_lr")) -> dict[tuple[str, str], float]:
    """(model, subset) -> the lr with the lowest mean EER on `test_set` over the LR grids
    (finished runs that did not diverge); the study picked its steps-grid lr this way on
    VoxCeleb1-O.  Cells without such runs are left out."""
    col = f"eer_pct_{test_set}"
    if frame.empty or col not in frame:
        return {}
    ok = frame[frame["grid"].isin(grids) & (frame["status"] == "finished")
               & ~frame["diverged"].astype(bool) & frame[col].notna()]
    means = ok.groupby(["model", "subset", "lr"])[col].mean().reset_index()
    best = means.loc[means.groupby(["model", "subset"])[col].idxmin()]
    return {(r.model, r.subset): float(r.lr) for r in best.itertuples()}
