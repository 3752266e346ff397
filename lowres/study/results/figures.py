"""The results' figures, PNG and PDF, one per grid with runs (lr, steps, ablation, modern,
the adaptation grids, demo) and, on request, DET curves of runs from their score files.
Diverged runs are drawn as red crosses: at their EER when they were evaluated, else at the
top of the panel."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io.lists import TEST_SET_LABELS
from lowres.io.run_folder import hyperparams_path, read_results, results_path
from lowres.study.grids.definitions import (
    ABLATION_LABELS,
    ABLATION_VARIANTS,
    ADAPTATION_GRIDS,
    ADAPTATION_LABELS,
    ADAPTATION_METHODS,
    MODELS,
    SUBSETS,
)
from lowres.study.results.frame import as_float, find_runs, read_hparams
from lowres.study.results.tables import (
    DEMO_COLUMNS,
    MODEL_LABELS,
    MODERN_STEPS,
    adaptation_cells,
    demo_cells,
    demo_label,
    demo_rows,
    grid_rows,
    modern_stats,
    ordered,
    seed_stats,
    tests_with_results,
)

__all__ = ["det_figure", "plot_ablation", "plot_adaptation", "plot_demo", "plot_det", "plot_lr",
           "plot_modern", "plot_steps"]

MODEL_COLORS = {"xvector": "tab:blue", "ecapa": "tab:orange", "wav2vec2": "tab:green"}
SUBSET_COLORS = {"full": "black", "tiny_few": "tab:purple", "tiny_many_low": "tab:red",
                 "tiny_many_high": "tab:cyan"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel_row(n: int, width: float, height: float = 3.4):
    """A figure of ``n`` panels side by side (``width`` inches each) sharing the y axis."""
    return _plt().subplots(1, n, figsize=(width * n, height), squeeze=False, sharey=True)


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    _plt().close(fig)
    return paths


def _diverged_eers(group: pd.DataFrame, col: str) -> list[float]:
    """The EERs of the group's diverged runs, NaN for those that have none."""
    div = group[group["diverged"]]
    return list(div.get(col, pd.Series(math.nan, div.index)))


def _diverged_marks(ax, pending: list[tuple[float, float]], label_done: list,
                    eer_axis: str = "y") -> None:
    """Red crosses for diverged runs, given as (position, EER) pairs: at their EER, or at
    the far end of the EER axis where they have none."""
    if not pending:
        return
    end = (ax.get_ylim() if eer_axis == "y" else ax.get_xlim())[1]
    positions = [p for p, _ in pending]
    eers = [end if (e is None or math.isnan(e)) else e for _, e in pending]
    xs, ys = (positions, eers) if eer_axis == "y" else (eers, positions)
    label = None if label_done else "diverged"
    ax.scatter(xs, ys, marker="x", color="red", s=50, zorder=5, label=label, clip_on=False)
    label_done.append(True)


def _log_x_panel(ax, title: str, xlabel: str, pending: list[tuple[float, float]],
                 label_done: list) -> None:
    """A subset's panel over a log x axis: title, label, major grid, diverged runs."""
    ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(True, which="major", alpha=0.3)
    _diverged_marks(ax, pending, label_done)


def _finish_panels(fig, axes, test: str, note: str, note_y: float = -0.1) -> None:
    """Y label, one legend above a row of panels (each label once), a note below."""
    axes[0][0].set_ylabel(f"EER (%) on {TEST_SET_LABELS.get(test, test)}")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels) + 1,
               bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.text(0.5, note_y, note, ha="center", fontsize=8)


def _spread(ax, position: float, stats: dict, color, eer_axis: str = "y") -> None:
    """Error bars at one point: the speaker-bootstrap interval of its mean EER (thin, capped)
    and ± sd over its seeds (thick); each where the frame has it."""
    bars = [((stats["low"], stats["high"]), dict(linewidth=0.9, marker="_" if eer_axis == "y"
                                                  else "|", markersize=7)),
            ((stats["mean"] - stats["sd"], stats["mean"] + stats["sd"]),
             dict(linewidth=3.0, alpha=0.45, solid_capstyle="butt"))]
    for (low, high), style in bars:
        if math.isnan(low) or math.isnan(high):
            continue
        xs, ys = ([position] * 2, [low, high]) if eer_axis == "y" else ([low, high], [position] * 2)
        ax.plot(xs, ys, color=color, zorder=2, **style)


SPREAD_NOTE = "bars: speaker-bootstrap interval of the mean (thin), ± sd over seeds (thick)"


def plot_lr(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """lr.png/pdf: EER vs learning rate, one panel per subset, one line per model."""
    rows = grid_rows(frame, ("naive_lr", "detailed_lr"), test_set, ("original",))
    if rows is None:
        return []
    sub, test, col = rows
    subsets = ordered(sub["subset"], SUBSETS)
    fig, axes = _panel_row(len(subsets), 3.6)
    div_label: list = []
    for ax, subset in zip(axes[0], subsets, strict=True):
        cell = sub[sub["subset"] == subset]
        pending = []
        for model in ordered(cell["model"], MODELS):
            runs = cell[cell["model"] == model]
            points = []
            for lr, group in runs.groupby("lr"):
                stats = seed_stats(group, col)
                if stats["n"]:
                    points.append((lr, stats["mean"], group["grid"].iloc[0], stats))
                pending += [(lr, v) for v in _diverged_eers(group, col)]
            if not points:
                continue
            lrs, eers, kinds, stats = zip(*sorted(points, key=lambda p: p[0]), strict=True)
            color = MODEL_COLORS.get(model)
            ax.plot(lrs, eers, "-", color=color, label=MODEL_LABELS.get(model, model))
            for lr, eer, kind, st in zip(lrs, eers, kinds, stats, strict=True):
                _spread(ax, lr, st, color)
                ax.plot(lr, eer, "o" if kind == "naive_lr" else "s", color=color,
                        markersize=5 if kind == "naive_lr" else 4,
                        markerfacecolor=color if kind == "naive_lr" else "white")
        _log_x_panel(ax, subset, "learning rate", pending, div_label)
    _finish_panels(fig, axes, test, "circles: naive grid, open squares: detailed grid; "
                   + SPREAD_NOTE)
    return _save(fig, out, "lr")


def plot_steps(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """steps.png/pdf: EER vs max_steps, mean ± sd over seeds and every seed."""
    rows = grid_rows(frame, ("steps",), test_set)
    if rows is None:
        return []
    sub, test, col = rows
    subsets = ordered(sub["subset"], SUBSETS)
    fig, axes = _panel_row(len(subsets), 3.6)
    models = ordered(sub["model"], MODELS)
    div_label: list = []
    all_steps = sorted(int(s) for s in sub["max_steps"].dropna().unique())
    for ax, subset in zip(axes[0], subsets, strict=True):
        cell = sub[sub["subset"] == subset]
        pending = []
        for k, model in enumerate(models):
            runs = cell[cell["model"] == model]
            if runs.empty:
                continue
            color = MODEL_COLORS.get(model)
            shift = 1.0 + 0.04 * (k - (len(models) - 1) / 2)  # dodge models on the log axis
            xs, means = [], []
            for steps, group in runs.groupby("max_steps"):
                stats = seed_stats(group, col)
                done = group[(group["status"] == "finished")]
                if col in done:
                    ax.scatter([steps * shift] * len(done), done[col], s=12, color=color,
                               alpha=0.5, zorder=3)
                if stats["n"]:
                    xs.append(steps * shift)
                    means.append(stats["mean"])
                    _spread(ax, steps * shift, stats, color)
                pending += [(steps * shift, v) for v in _diverged_eers(group, col)]
            if xs:
                ax.plot(xs, means, color=color, marker="o", label=MODEL_LABELS.get(model, model))
        ax.set_xscale("log")
        ax.set_xticks(all_steps)
        ax.set_xticklabels([f"{s // 1000}k" if s >= 1000 else str(s) for s in all_steps])
        ax.minorticks_off()
        ax.set_title(subset)
        ax.set_xlabel("max_steps")
        ax.grid(True, alpha=0.3)
        _diverged_marks(ax, pending, div_label)
    _finish_panels(fig, axes, test, f"mean over seeds; dots: single seeds; {SPREAD_NOTE}")
    return _save(fig, out, "steps")


def plot_ablation(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """ablation.png/pdf: the wav2vec2 ablation, bars = mean, dots = seeds."""
    rows = grid_rows(frame, ("ablation",), test_set)
    if rows is None:
        return []
    sub, test, col = rows
    subsets = ordered(sub["subset"], SUBSETS)
    tags = ordered(sub["tag"], tuple(ABLATION_VARIANTS))
    fig, axes = _panel_row(len(subsets), 4.2, 0.32 * len(tags) + 1.6)
    div_label: list = []
    rng = np.random.default_rng(0)
    for ax, subset in zip(axes[0], subsets, strict=True):
        cell = sub[sub["subset"] == subset]
        ys = np.arange(len(tags))[::-1]
        baseline = None
        pending = []
        for y, tag in zip(ys, tags, strict=True):
            group = cell[cell["tag"] == tag]
            stats = seed_stats(group, col)
            color = "tab:gray" if tag == "baseline" else "tab:green"
            if stats["n"]:
                ax.barh(y, stats["mean"], color=color, alpha=0.45, height=0.7)
                _spread(ax, y, stats, "black", eer_axis="x")
                if tag == "baseline":
                    baseline = stats["mean"]
            done = group[group["status"] == "finished"]
            if col in done and len(done):
                jitter = rng.uniform(-0.15, 0.15, len(done))
                ax.scatter(done[col], y + jitter, s=14, color="black", zorder=3)
            pending += [(y, v) for v in _diverged_eers(group, col)]
        if baseline is not None:
            ax.axvline(baseline, color="tab:gray", linestyle="--", linewidth=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([ABLATION_LABELS.get(t, t) for t in tags])
        ax.set_title(f"wav2vec2, {subset}")
        ax.set_xlabel(f"EER (%) on {TEST_SET_LABELS.get(test, test)}")
        ax.grid(True, axis="x", alpha=0.3)
        _diverged_marks(ax, pending, div_label, eer_axis="x")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(loc="lower right", fontsize=8)
    fig.text(0.5, -0.02, "filled bars: mean over seeds; dots: single seeds; dashed: baseline; "
             f"black {SPREAD_NOTE}", ha="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "ablation")


def plot_modern(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """EER per toolbox step (x), one line per subset, one panel per model."""
    rows = grid_rows(frame, ("modern",), test_set)
    if rows is None:
        return []
    sub, test, _ = rows
    models = ordered(sub["model"], MODELS)
    fig, axes = _panel_row(len(models), 4.0)
    xs = np.arange(len(MODERN_STEPS))
    for ax, model in zip(axes[0], models, strict=True):
        subsets = ordered(sub[sub["model"] == model]["subset"], SUBSETS)
        for k, subset in enumerate(subsets):
            stats = modern_stats(frame, model, subset, test)
            shift = 0.06 * (k - (len(subsets) - 1) / 2)  # dodge the subsets' bars
            ok = [(x + shift, st) for x, st in zip(xs, stats, strict=True) if st["n"]]
            if not ok:
                continue
            color = SUBSET_COLORS.get(subset)
            ax.plot([x for x, _ in ok], [st["mean"] for _, st in ok], color=color, marker="o",
                    label=subset)
            for x, st in ok:
                _spread(ax, x, st, color)
        ax.set_xticks(xs)
        ax.set_xticklabels([label for label, _, _ in MODERN_STEPS], rotation=25, ha="right",
                           fontsize=8)
        ax.set_title(MODEL_LABELS.get(model, model))
        ax.grid(True, alpha=0.3)
    _finish_panels(fig, axes, test, f"mean over seeds; each step adds to the one before; "
                   f"{SPREAD_NOTE}", note_y=-0.24)
    return _save(fig, out, "modern")


METHOD_STYLES = {"study": ("tab:gray", "o"), "frozen_mhfa": ("tab:blue", "s"),
                 "lora_mhfa": ("tab:orange", "^"), "adapter_mhfa": ("tab:green", "D"),
                 "lora_mean": ("tab:red", "v")}


def plot_adaptation(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """<grid>.png/pdf per adaptation grid with runs: each method's EER at its chosen lr
    (:func:`~lowres.study.results.tables.adaptation_cells`) against its trainable parameters
    (log axis), one panel per subset; a method whose runs wrote no parameters.json is left
    out."""
    written = []
    for grid in ADAPTATION_GRIDS:
        rows = grid_rows(frame, (grid,), test_set)
        if rows is None:
            continue
        sub, test, col = rows
        cells = adaptation_cells(frame, grid, test)
        subsets = ordered(sub["subset"], SUBSETS)
        fig, axes = _panel_row(len(subsets), 3.6)
        div_label: list = []
        for ax, subset in zip(axes[0], subsets, strict=True):
            pending = []
            for method in ordered(sub["tag"], ADAPTATION_METHODS):
                cell = cells.get((method, subset))
                if cell is None or math.isnan(cell.trainable):
                    continue
                color, marker = METHOD_STYLES.get(method, ("black", "o"))
                if cell.stats["n"]:
                    ax.plot(cell.trainable, cell.stats["mean"], marker, color=color,
                            label=ADAPTATION_LABELS.get(method, method))
                    _spread(ax, cell.trainable, cell.stats, color)
                pending += [(cell.trainable, v) for v in _diverged_eers(cell.runs, col)]
            _log_x_panel(ax, subset, "trainable parameters", pending, div_label)
        _finish_panels(fig, axes, test, "each method at its lr of lowest validation EER, mean "
                       f"over seeds; {SPREAD_NOTE}")
        written += _save(fig, out, grid)
    return written


def plot_demo(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Bars: EER per model and start (groups) x subset (colours), the untrained model in
    grey."""
    cells = demo_cells(frame)
    if not cells:
        return []
    tests = tests_with_results(frame)
    models = demo_rows(cells)
    fig, axes = _panel_row(len(tests), 1.4 * len(models))
    colors = {"untrained": "tab:gray", "tiny_few": "tab:purple",
              "tiny_many_low": "tab:red", "tiny_many_high": "tab:cyan"}
    width = 0.8 / len(DEMO_COLUMNS)
    for ax, test in zip(axes[0], tests, strict=True):
        for k, col in enumerate(DEMO_COLUMNS):
            xs, ys = [], []
            for i, model in enumerate(models):
                r = cells.get((model, col))
                if r is not None and not math.isnan(as_float(r.get(f"eer_pct_{test}"))):
                    xs.append(i + (k - (len(DEMO_COLUMNS) - 1) / 2) * width)
                    ys.append(as_float(r[f"eer_pct_{test}"]))
            ax.bar(xs, ys, width=width, color=colors[col], label=col,
                   hatch="//" if col == "untrained" else None, edgecolor="white")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([demo_label(m, cells, sep="\n") for m in models])
        ax.set_title(TEST_SET_LABELS[test])
        ax.axhline(50, color="black", linewidth=0.8, linestyle=":")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("EER (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels),
               bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.text(0.5, -0.1, "demo (CPU-sized, synthetic corpus): one run per bar; dotted: chance",
             ha="center", fontsize=8)
    return _save(fig, out, "demo")


# Runs per DET panel: beyond about six curves (and their AS-norm twins) colours repeat and
# the curves cannot be told apart.
DET_RUNS_PER_PANEL = 6


@dataclass(frozen=True)
class _DetRun:
    label: str  # the run folder as in results.csv's run column (absolute outside the root)
    model: str  # hyperparams.yaml's model_name, "" when unknown
    scores: Path  # its eval/best folder
    test_sets: dict  # results.json's test sets that have score files


def _det_runs(root: Path, runs: list[str] | None) -> list[_DetRun]:
    """The runs to draw: those named, else every run below ``root`` with score files."""
    named = runs is not None
    folders = ([Path(r) if Path(r).is_absolute() else root / r for r in runs] if named
               else find_runs(root))
    found = []
    for folder in folders:
        results = results_path(folder)
        sets = (read_results(folder) or {}).get("test_sets") or {}
        sets = {t: e for t, e in sets.items()
                if isinstance(e, dict) and (results.parent / e.get("scores", "")).is_file()}
        if sets:
            label = str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
            model = str(read_hparams(hyperparams_path(folder)).get("model_name") or "")
            found.append(_DetRun(label, model, results.parent, sets))
        elif named:
            raise ValueError(f"{folder}: no score files of the best checkpoint ({results})")
    return found


def _det_groups(found: list[_DetRun]) -> list[tuple[str, list[_DetRun]]]:
    """The runs by model (the study's order, unknown last), each model's split into panels
    of at most DET_RUNS_PER_PANEL runs of near-equal size: (title, runs) per panel row."""
    groups = []
    for model in [*ordered((r.model for r in found), MODELS), ""]:
        runs = [r for r in found if r.model == model]
        if not runs:
            continue
        parts = math.ceil(len(runs) / DET_RUNS_PER_PANEL)
        size = math.ceil(len(runs) / parts)
        name = MODEL_LABELS.get(model, model) or "other runs"
        for k in range(parts):
            title = name if parts == 1 else f"{name} ({k + 1}/{parts})"
            groups.append((title, runs[k * size:(k + 1) * size]))
    return groups


def det_figure(root: Path, runs: list[str] | None = None):
    """The DET figure (or None without runs to draw): a row of panels per model, at most
    DET_RUNS_PER_PANEL runs each (a model with more gets several rows), a column per test
    set; one colour per run within a panel, its AS-norm curve dashed in that colour, and
    each panel's legend below it, off the curves.

    ``runs``: run folders (relative to ``root`` as in results.csv's ``run`` column, or
    absolute); default every run below ``root`` with score files.  Raises ValueError for
    a named run without score files.
    """
    from lowres.scoring.det import det_limits, plot_det_curve, set_det_axes
    from lowres.scoring.metrics import eer
    from lowres.scoring.trials import read_scores

    found = _det_runs(root, runs)
    if not found:
        return None
    names = {t for run in found for t in run.test_sets}
    tests = [t for t in TEST_SET_LABELS if t in names] + sorted(names - set(TEST_SET_LABELS))
    groups = _det_groups(found)
    plt = _plt()
    fig, axes = plt.subplots(len(groups), len(tests), squeeze=False, layout="constrained",
                             figsize=(4.6 * len(tests), 5.8 * len(groups)))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, (title, group) in zip(axes, groups, strict=True):
        for ax, test in zip(row, tests, strict=True):
            curves = []
            for k, run in enumerate(group):
                entry = run.test_sets.get(test)
                if entry is None:
                    continue
                kinds = [(entry, "-", run.label)]
                if "as_norm" in entry and (run.scores / entry["as_norm"]["scores"]).is_file():
                    kinds.append((entry["as_norm"], "--", f"{run.label}, AS-norm"))
                for e, style, text in kinds:
                    scores = read_scores(run.scores / e["scores"])
                    curves.append((scores.score.to_numpy(), scores.label.to_numpy(),
                                   dict(label=text, linestyle=style, color=colors[k])))
            ax.set_title(f"{title}: {TEST_SET_LABELS.get(test, test)}")
            if not curves:
                ax.set_axis_off()
                continue
            smallest = min(1 / min(int(y.sum()), int(len(y) - y.sum())) for _, y, _ in curves)
            worst = max(eer(s, y).eer for s, y, _ in curves)
            set_det_axes(ax, *det_limits(smallest, worst))
            for s, y, style in curves:
                plot_det_curve(ax, s, y, linewidth=1.2, **style)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7,
                      frameon=False)
    return fig


def plot_det(root: Path, out: Path, runs: list[str] | None = None) -> list[Path]:
    """det.png/pdf: :func:`det_figure`."""
    fig = det_figure(root, runs)
    return [] if fig is None else _save(fig, out, "det")
