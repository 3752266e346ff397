"""Collect grid runs into a table and draw the study's figures.

    python -m lowres.results RUNS_ROOT [--out DIR]

Every run folder below RUNS_ROOT (one with hyperparams.yaml, train_log.txt or
eval/) becomes one row of ``results.csv``: its grid point (from the folder
layout of lowres/study/grids/runs.py, else from hyperparams.yaml), its status, whether
it diverged (``diverged``: the verdict of its results.json, written by the evaluation
when training stopped at a non-finite loss or no validation had a finite EER; for a run
without one, a NaN/inf loss in train_log.txt), and per test
set the EER (in %), minDCF (p_target 0.01 and 0.05) and number of trials of the
best checkpoint (eval/best/results.json).  ``results.md`` holds the grids as
Markdown tables (mean ± sd over seeds, n = number of seeds) and the lists of
diverged and unfinished runs; the figures (PNG and PDF):

* ``lr.*``: EER vs learning rate, one panel per subset, one line per model
  (naive and detailed LR grid together; VoxCeleb1-O by default),
* ``steps.*``: EER vs max_steps, mean ± sd over seeds and every seed,
* ``ablation.*``: the wav2vec2 ablation, bars = mean, dots = seeds.
* ``modern.*`` (the modern grid, beyond the study): EER per step of the toolbox (the
  study's recipe, + augmentation, + checkpoint averaging & large-margin stage, + AS-norm),
  one panel per model, one line per subset, mean ± sd over seeds.
* ``demo.*`` (``make demo``): EER per model x tiny subset next to the untrained model
  (``max_steps`` 0), one panel per test set.
* ``det.*`` (only with ``--det [RUN ...]``): DET curves (probit axes) of the named runs,
  or of every run with score files, one panel per test set, from the best checkpoint's
  score files (AS-norm dashed); with one run named, that run's curves per test set.

Diverged runs are kept: marked "div." in the tables and drawn as red crosses
(at their EER when they were evaluated, else at the top of the panel).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lowres.io.lists import TEST_SET_LABELS
from lowres.io.run_folder import (
    EVAL,
    RUN_MARKERS,
    SAVE,
    hyperparams_path,
    read_results,
    results_path,
    train_log_path,
)
from lowres.study.grids.definitions import (
    ABLATION_LABELS,
    ABLATION_VARIANTS,
    DEMO_STARTS,
    DEMO_SUBSETS,
    MODELS,
    SUBSETS,
)
from lowres.study.grids.runs import parse_run_path

__all__ = ["collect", "best_lrs", "write_markdown", "plot_lr", "plot_steps", "plot_ablation",
           "MODERN_STEPS", "modern_table", "plot_modern",
           "demo_cells", "demo_table", "demo_checks", "demo_section", "plot_demo", "plot_det",
           "main"]

SKIP_DIRS = {SAVE, EVAL, "results", "__pycache__"}
HPARAM_KEYS = (
    "lr", "max_steps", "seed", "batch_size", "lr_schedule", "regularisation", "reset_weights",
    "completely_freeze_feature_extractor", "wav2vec_initially_frozen", "num_frozen_steps",
    "enroll_training_data", "post_process_scores", "precision", "subset", "model_name",
)
METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05", "n_trials")
MODEL_LABELS = {"xvector": "x-vector", "ecapa": "ECAPA-TDNN", "wav2vec2": "wav2vec2"}
MODEL_COLORS = {"xvector": "tab:blue", "ecapa": "tab:orange", "wav2vec2": "tab:green"}
_SCALAR = re.compile(r"^([A-Za-z_][\w.]*):[ \t]*([^\n#!&*][^\n#]*?)?[ \t]*(?:#.*)?$", re.M)
_NAN_LOSS = re.compile(r"loss[^:=\n]*[:=]\s*[-+]?(nan|inf)\b", re.I)


# ---------------------------------------------------------------------------
# reading run folders
def find_runs(root: Path) -> list[Path]:
    """Run folders below `root` (sorted); their save/ and eval/ are not searched."""
    found = []

    def walk(folder: Path) -> None:
        names = {p.name for p in folder.iterdir()}
        if any(m in names for m in RUN_MARKERS) and folder != root:
            found.append(folder)
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name not in SKIP_DIRS and not child.name.startswith("."):
                walk(child)

    walk(root)
    return sorted(found)


def read_hparams(path: Path) -> dict:
    """Top-level scalar values of a (resolved) hyperparams.yaml, without building objects."""
    import yaml

    values: dict = {}
    if not path.is_file():
        return values
    for key, raw in _SCALAR.findall(path.read_text(errors="replace")):
        if not raw:
            continue
        try:
            values[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            values[key] = raw
    return values


def flatten_results(data: dict, prefix: str = "") -> dict[str, dict]:
    """{test set: metrics} from results.json (its "test_sets" part when there is one, plus
    "val" for the validation EER), also when sets are nested (e.g. raw / asnorm)."""
    out: dict[str, dict] = {}
    if not prefix and isinstance(data.get("test_sets"), dict):
        out = flatten_results(data["test_sets"], prefix="/")
        out = {k.lstrip("/"): v for k, v in out.items()}
        if isinstance(data.get("validation"), dict) and "eer" in data["validation"]:
            out["val"] = data["validation"]
        return out
    for key, value in data.items():
        if not isinstance(value, dict):
            continue
        name = f"{prefix}{key}"
        if "eer" in value:
            out[name] = value
        else:
            out.update(flatten_results(value, prefix=f"{name}/"))
    return out


def diverged_in_log(path: Path) -> bool:
    """True when train_log.txt reports a NaN or infinite loss."""
    return path.is_file() and bool(_NAN_LOSS.search(path.read_text(errors="replace")))


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(root: Path, folder: Path) -> dict:
    info = parse_run_path(root, folder)
    hp = read_hparams(hyperparams_path(folder))
    row: dict = {"run": str(folder.relative_to(root))}
    row["grid"] = info["grid"] or ""
    row["model"] = info["model"] or hp.get("model_name", "")
    row["subset"] = info["subset"] or hp.get("subset", "")
    row["tag"] = info["tag"] or ""
    for key in HPARAM_KEYS:
        if key in ("model_name", "subset"):
            continue
        value = info.get(key)
        row[key] = value if value is not None else hp.get(key)
    if row["lr"] is not None:
        row["lr"] = _float(row["lr"])
    results_file = results_path(folder)
    data = read_results(folder) or {}
    results = flatten_results(data) if isinstance(data, dict) else {}
    nan_eer = False
    for test_set, metrics in results.items():
        eer = _float(metrics.get("eer"))
        nan_eer |= math.isnan(eer)
        row[f"eer_pct_{test_set}"] = 100.0 * eer
        for metric in METRICS[1:]:
            row[f"{metric}_{test_set}"] = _float(metrics.get(metric))
        row.update(as_norm_columns(test_set, metrics))
    verdict = data.get("diverged") if isinstance(data, dict) else None
    if verdict is not None:  # the evaluation's verdict (lowres.scoring.evaluation)
        row["diverged"] = bool(verdict)
    else:  # no results.json, or one written before it had a verdict
        row["diverged"] = diverged_in_log(train_log_path(folder)) or nan_eer
    if results_file.is_file() and (results or verdict):
        row["status"] = "finished"
    elif results_file.is_file():
        row["status"] = "bad results.json"
    else:
        row["status"] = "unfinished"
    row.update(stage_columns(folder, hp))
    return row


def as_norm_columns(test_set: str, metrics: dict, prefix: str = "") -> dict:
    """``<prefix>as_norm_eer_pct_<test set>``: the EER after AS-norm, when tested with it."""
    as_norm = metrics.get("as_norm")
    if not isinstance(as_norm, dict):
        return {}
    return {f"{prefix}as_norm_eer_pct_{test_set}": 100.0 * _float(as_norm.get("eer"))}


def stage_columns(folder: Path, hp: dict) -> dict:
    """Beyond the study: ``parent_run``, the run a fine-tuning stage started
    from (its init_from_run, "" for a run from scratch); ``averaged``, "<by> <n>" when
    the run was also tested with averaged checkpoints (eval/averaged/results.json), and
    those EERs as ``averaged_eer_pct_<test set>`` (``averaged_as_norm_eer_pct_<test set>``
    after AS-norm)."""
    row = {"parent_run": str(hp.get("init_from_run") or ""), "averaged": ""}
    data = read_results(folder, "averaged")
    if data is None:
        return row
    info = data.get("averaged") if isinstance(data, dict) else None
    if isinstance(info, dict):
        row["averaged"] = f"{info.get('by')} {info.get('n')}"
        for test_set, metrics in flatten_results(data).items():
            row[f"averaged_eer_pct_{test_set}"] = 100.0 * _float(metrics.get("eer"))
            row.update(as_norm_columns(test_set, metrics, "averaged_"))
    return row


def collect(root: Path | str) -> pd.DataFrame:
    """One row per run folder below `root`."""
    root = Path(root)
    rows = [read_run(root, folder) for folder in find_runs(root)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    metric_cols = sorted(c for c in frame.columns if c.startswith(("eer_pct_",) + METRICS[1:]))
    metric_cols += sorted(c for c in frame.columns if c.startswith(
        ("as_norm_eer_pct_", "averaged_eer_pct_", "averaged_as_norm_eer_pct_")))
    first = ["run", "grid", "model", "subset", "tag", *[k for k in HPARAM_KEYS
             if k not in ("model_name", "subset")], "status", "diverged", "parent_run",
             "averaged"]
    return frame[[c for c in first if c in frame.columns] + metric_cols]


# ---------------------------------------------------------------------------
# summaries
def pick_test_set(frame: pd.DataFrame, preferred: str | None, fallback=("hard", "original")):
    """Name of the test set to show: `preferred` if given, else the first of `fallback`
    that has results, else any."""
    sets = [c.removeprefix("eer_pct_") for c in frame.columns if c.startswith("eer_pct_")]
    for name in ([preferred] if preferred else []) + list(fallback):
        if name in sets and frame[f"eer_pct_{name}"].notna().any():
            return name
    return sets[0] if sets else None


def _grid_rows(frame: pd.DataFrame, grids: tuple[str, ...], test_set: str | None,
               fallback=("hard", "original")) -> tuple[pd.DataFrame, str, str] | None:
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


def _order(values, known):
    values = [v for v in dict.fromkeys(values) if v]
    return [v for v in known if v in values] + sorted(v for v in values if v not in known)


def seed_stats(group: pd.DataFrame, col: str) -> dict:
    finished = group[group["status"] == "finished"]
    values = finished[col].to_numpy(dtype=float) if col in finished else np.array([])
    ok = values[~np.isnan(values)]
    return {
        "mean": float(ok.mean()) if ok.size else math.nan,
        "sd": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        "n": int(ok.size), "diverged": int(group["diverged"].sum()),
        "runs": len(group), "unfinished": int((group["status"] != "finished").sum()),
    }


def _cell(stats: dict, bold: bool = False) -> str:
    if stats["n"] == 0:
        text = "div." if stats["diverged"] else "—"
    else:
        text = f"{stats['mean']:.2f}"
        if stats["n"] > 1:
            text += f" ± {stats['sd']:.2f}"
        if bold:
            text = f"**{text}**"
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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def lr_table(frame: pd.DataFrame, grid: str, test_set: str) -> list[str]:
    """One row per model x subset, best EER in bold.  Columns are the lrs when all cells
    share them (naive grid), else the cell's own lrs in order with "lr: EER" entries."""
    sub = frame[frame["grid"] == grid]
    lrs = sorted(sub["lr"].dropna().unique())
    cells = [(m, s) for m in _order(sub["model"], MODELS)
             for s in _order(sub[sub["model"] == m]["subset"], SUBSETS)]
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
    return _table(["model", "subset", *header], rows)


def steps_table(frame: pd.DataFrame, test_set: str) -> list[str]:
    sub = frame[frame["grid"] == "steps"]
    steps = sorted(int(s) for s in sub["max_steps"].dropna().unique())
    rows = []
    for model in _order(sub["model"], MODELS):
        for subset in _order(sub[sub["model"] == model]["subset"], SUBSETS):
            cell = sub[(sub["model"] == model) & (sub["subset"] == subset)]
            lr = cell["lr"].dropna()
            rows.append([MODEL_LABELS.get(model, model), subset,
                         fmt_lr(lr.iloc[0]) if len(lr) else ""] + [
                _cell(seed_stats(cell[cell["max_steps"] == s], f"eer_pct_{test_set}"))
                for s in steps])
    return _table(["model", "subset", "lr", *[f"{s // 1000}k" for s in steps]], rows)


def ablation_table(frame: pd.DataFrame, test_set: str) -> list[str]:
    sub = frame[frame["grid"] == "ablation"]
    subsets = _order(sub["subset"], SUBSETS)
    rows = []
    for tag in _order(sub["tag"], tuple(ABLATION_VARIANTS)):
        rows.append([ABLATION_LABELS.get(tag, tag)] + [
            _cell(seed_stats(sub[(sub["tag"] == tag) & (sub["subset"] == s)],
                             f"eer_pct_{test_set}")) for s in subsets])
    return _table(["variant", *subsets], rows)


# The modern grid's toolbox a step at a time: (label, stage run, EER column prefix). The
# last two steps are the large-margin stage's averaged checkpoints without / with AS-norm.
MODERN_STEPS = (
    ("study recipe", "study", "eer_pct_"),
    ("+ augmentation", "augment", "eer_pct_"),
    ("+ averaging & large margin", "large_margin", "averaged_eer_pct_"),
    ("+ AS-norm", "large_margin", "averaged_as_norm_eer_pct_"),
)
SUBSET_COLORS = {"full": "black", "tiny_few": "tab:purple", "tiny_many_low": "tab:red",
                 "tiny_many_high": "tab:cyan"}


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
    for model in _order(sub["model"], MODELS):
        for subset in _order(sub[sub["model"] == model]["subset"], SUBSETS):
            stats = modern_stats(frame, model, subset, test_set)
            means = [st["mean"] for st in stats if st["n"]]
            best = min(means) if means else None
            rows.append([MODEL_LABELS.get(model, model), subset] + [
                _cell(st, bold=st["n"] > 0 and st["mean"] == best) for st in stats])
    return _table(["model", "subset", *[label for label, _, _ in MODERN_STEPS]], rows)


def plot_modern(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    """EER per toolbox step (x), one line per subset, one panel per model."""
    rows = _grid_rows(frame, ("modern",), test_set)
    if rows is None:
        return []
    sub, test, _ = rows
    models = _order(sub["model"], MODELS)
    fig, axes = _panel_row(len(models), 4.0)
    xs = np.arange(len(MODERN_STEPS))
    for ax, model in zip(axes[0], models, strict=True):
        for subset in _order(sub[sub["model"] == model]["subset"], SUBSETS):
            stats = modern_stats(frame, model, subset, test)
            ok = [(x, st) for x, st in zip(xs, stats, strict=True) if st["n"]]
            if not ok:
                continue
            ax.errorbar([x for x, _ in ok], [st["mean"] for _, st in ok],
                        yerr=[0.0 if math.isnan(st["sd"]) else st["sd"] for _, st in ok],
                        color=SUBSET_COLORS.get(subset), marker="o", capsize=3, label=subset)
        ax.set_xticks(xs)
        ax.set_xticklabels([label for label, _, _ in MODERN_STEPS], rotation=25, ha="right",
                           fontsize=8)
        ax.set_title(MODEL_LABELS.get(model, model))
        ax.grid(True, alpha=0.3)
    _finish_panels(fig, axes, test, "mean ± sd over seeds; each step adds to the one before",
                   note_y=-0.24)
    return _save(fig, out, "modern")


def demo_cells(frame: pd.DataFrame) -> dict[tuple[tuple[str, str], str], pd.Series]:
    """The demo grid's runs: ((model, start), subset or "untrained") -> its row; start is
    the wav2vec2 run's tag (DEMO_STARTS) or "" (max_steps 0 = the untrained model of
    lowres.study.demo).  Only finished runs."""
    sub = frame[(frame["grid"] == "demo") & (frame["status"] == "finished")]
    cells = {}
    for _, row in sub.iterrows():
        untrained = _float(row.get("max_steps")) == 0
        key = (row["model"], row.get("tag") or "")
        cells[key, "untrained" if untrained else row["subset"]] = row
    return cells


DEMO_COLUMNS = ("untrained", *DEMO_SUBSETS)
START_LABELS = {"random_init": "random init", "pretrained": "pre-trained"}


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
            eer = _float(r.get(f"eer_pct_{test_set}")) if r is not None else math.nan
            dcf = _float(r.get(f"min_dcf_0.05_{test_set}")) if r is not None else math.nan
            row.append("—" if math.isnan(eer) else f"{eer:.2f} / {dcf:.3f}"
                       + (" (div.)" if r is not None and r["diverged"] else ""))
        rows.append(row)
    header = ["model", *DEMO_COLUMNS]  # cells: "EER % / minDCF", as the section title says
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = _table([h.ljust(w) for h, w in zip(header, widths, strict=True)],
                   [[c.ljust(w) for c, w in zip(r, widths, strict=True)] for r in rows])
    lines[1] = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return lines


def _eers(cells: dict, key: tuple[str, str], col: str, columns=DEMO_COLUMNS) -> dict:
    return {c: _float(cells[key, c].get(col)) if (key, c) in cells else math.nan
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
        few = _float(cells[pre, "tiny_few"].get(col)) if (pre, "tiny_few") in cells else math.nan
        if others and not math.isnan(few):
            rivals = {demo_label(k, cells): _float(cells[k, "tiny_few"].get(col)) for k in others}
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
    lines = ["# Results", ""]
    if frame.empty:
        path.write_text("# Results\n\nNo runs found.\n")
        return
    counts = frame["status"].value_counts().to_dict()
    lines += [f"{len(frame)} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f"; {int(frame['diverged'].sum())} diverged (non-finite loss or validation "
              "EER; kept and marked "
              "'div.'). EER in %, best checkpoint; mean ± sd over seeds, (n) = seeds with "
              "results.", ""]
    for grid, title in (("naive_lr", "Naive LR grid"), ("detailed_lr", "Detailed LR grid")):
        if rows := _grid_rows(frame, (grid,), lr_test, ("original",)):
            test = rows[1]
            lines += [f"## {title} (EER %, {TEST_SET_LABELS.get(test, test)})", ""]
            lines += lr_table(frame, grid, test) + [""]
    for grid, title, table in (("steps", "Steps", steps_table),
                               ("ablation", "wav2vec2 ablation", ablation_table)):
        if rows := _grid_rows(frame, (grid,), steps_test):
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
        lines += _table(["run", "status", *eer_cols], [
            [r["run"], r["status"] + (" (div.)" if r["diverged"] else "")]
            + [f"{r[c]:.2f}" if not pd.isna(r[c]) else "" for c in eer_cols]
            for _, r in other.iterrows()]) + [""]
    for title, mask in (("Diverged runs (non-finite loss or validation EER)",
                         frame["diverged"]),
                        ("Unfinished runs", frame["status"] != "finished")):
        if mask.any():
            lines += [f"## {title}", ""] + [f"- {r}" for r in frame[mask]["run"]] + [""]
    path.write_text("\n".join(lines))


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


# ---------------------------------------------------------------------------
# figures
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


def plot_lr(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    rows = _grid_rows(frame, ("naive_lr", "detailed_lr"), test_set, ("original",))
    if rows is None:
        return []
    sub, test, col = rows
    subsets = _order(sub["subset"], SUBSETS)
    fig, axes = _panel_row(len(subsets), 3.6)
    div_label: list = []
    for ax, subset in zip(axes[0], subsets, strict=True):
        cell = sub[sub["subset"] == subset]
        pending = []
        for model in _order(cell["model"], MODELS):
            runs = cell[cell["model"] == model]
            points = []
            for lr, group in runs.groupby("lr"):
                stats = seed_stats(group, col)
                if stats["n"]:
                    points.append((lr, stats["mean"], group["grid"].iloc[0]))
                pending += [(lr, v) for v in _diverged_eers(group, col)]
            if not points:
                continue
            lrs, eers, kinds = zip(*sorted(points), strict=True)
            color = MODEL_COLORS.get(model)
            ax.plot(lrs, eers, "-", color=color, label=MODEL_LABELS.get(model, model))
            for lr, eer, kind in zip(lrs, eers, kinds, strict=True):
                ax.plot(lr, eer, "o" if kind == "naive_lr" else "s", color=color,
                        markersize=5 if kind == "naive_lr" else 4,
                        markerfacecolor=color if kind == "naive_lr" else "white")
        ax.set_xscale("log")
        ax.set_title(subset)
        ax.set_xlabel("learning rate")
        ax.grid(True, which="major", alpha=0.3)
        _diverged_marks(ax, pending, div_label)
    _finish_panels(fig, axes, test, "circles: naive grid, open squares: detailed grid")
    return _save(fig, out, "lr")


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


def plot_steps(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    rows = _grid_rows(frame, ("steps",), test_set)
    if rows is None:
        return []
    sub, test, col = rows
    subsets = _order(sub["subset"], SUBSETS)
    fig, axes = _panel_row(len(subsets), 3.6)
    models = _order(sub["model"], MODELS)
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
            xs, means, sds = [], [], []
            for steps, group in runs.groupby("max_steps"):
                stats = seed_stats(group, col)
                done = group[(group["status"] == "finished")]
                if col in done:
                    ax.scatter([steps * shift] * len(done), done[col], s=12, color=color,
                               alpha=0.5, zorder=3)
                if stats["n"]:
                    xs.append(steps * shift)
                    means.append(stats["mean"])
                    sds.append(0.0 if math.isnan(stats["sd"]) else stats["sd"])
                pending += [(steps * shift, v) for v in _diverged_eers(group, col)]
            if xs:
                ax.errorbar(xs, means, yerr=sds, color=color, marker="o", capsize=3,
                            label=MODEL_LABELS.get(model, model))
        ax.set_xscale("log")
        ax.set_xticks(all_steps)
        ax.set_xticklabels([f"{s // 1000}k" if s >= 1000 else str(s) for s in all_steps])
        ax.minorticks_off()
        ax.set_title(subset)
        ax.set_xlabel("max_steps")
        ax.grid(True, alpha=0.3)
        _diverged_marks(ax, pending, div_label)
    _finish_panels(fig, axes, test, "mean ± sd over seeds; dots: single seeds")
    return _save(fig, out, "steps")


def plot_ablation(frame: pd.DataFrame, out: Path, test_set: str | None = None) -> list[Path]:
    rows = _grid_rows(frame, ("ablation",), test_set)
    if rows is None:
        return []
    sub, test, col = rows
    subsets = _order(sub["subset"], SUBSETS)
    tags = _order(sub["tag"], tuple(ABLATION_VARIANTS))
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
    fig.text(0.5, -0.02, "bars: mean over seeds; dots: single seeds; dashed: baseline",
             ha="center", fontsize=8)
    fig.tight_layout()
    return _save(fig, out, "ablation")


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
                if r is not None and not math.isnan(_float(r.get(f"eer_pct_{test}"))):
                    xs.append(i + (k - (len(DEMO_COLUMNS) - 1) / 2) * width)
                    ys.append(_float(r[f"eer_pct_{test}"]))
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


def _det_runs(root: Path, runs: list[str] | None) -> list[tuple[str, Path, dict]]:
    """(label, eval folder, test_sets of results.json) of the runs to draw."""
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
            found.append((label, results.parent, sets))
        elif named:
            raise ValueError(f"{folder}: no score files of the best checkpoint ({results})")
    return found


def plot_det(root: Path, out: Path, runs: list[str] | None = None) -> list[Path]:
    """det.png/pdf: one panel per test set, one DET curve per run (AS-norm dashed).

    ``runs``: run folders (relative to ``root`` as in results.csv's ``run`` column, or
    absolute); default every run below ``root`` with score files.  Raises ValueError for
    a named run without score files.
    """
    from lowres.scoring.det import det_limits, plot_det_curve, set_det_axes
    from lowres.scoring.evaluation import read_scores
    from lowres.scoring.metrics import eer

    found = _det_runs(root, runs)
    if not found:
        return []
    names = {t for _, _, sets in found for t in sets}
    tests = [t for t in TEST_SET_LABELS if t in names] + sorted(names - set(TEST_SET_LABELS))
    plt = _plt()
    fig, axes = plt.subplots(1, len(tests), figsize=(4.6 * len(tests), 4.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, test in zip(axes[0], tests, strict=True):
        curves = []
        for k, (label, folder, sets) in enumerate(found):
            entry = sets.get(test)
            if entry is None:
                continue
            kinds = [(entry, "-", label)]
            if "as_norm" in entry and (folder / entry["as_norm"]["scores"]).is_file():
                kinds.append((entry["as_norm"], "--", f"{label}, AS-norm"))
            for e, style, text in kinds:
                scores = read_scores(folder / e["scores"])
                curves.append((scores.score.to_numpy(), scores.label.to_numpy(),
                               dict(label=text, linestyle=style, color=colors[k % len(colors)])))
        smallest = min(1 / min(int(y.sum()), int(len(y) - y.sum())) for _, y, _ in curves)
        worst = max(eer(s, y).eer for s, y, _ in curves)
        set_det_axes(ax, *det_limits(smallest, worst))
        for s, y, style in curves:
            plot_det_curve(ax, s, y, linewidth=1.2, **style)
        ax.set_title(TEST_SET_LABELS.get(test, test))
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return _save(fig, out, "det")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowres.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs_root", type=Path)
    parser.add_argument("--out", type=Path, help="output folder (default RUNS_ROOT/results)")
    parser.add_argument("--lr_test_set", help="test set of the LR tables/figure "
                        "(default original)")
    parser.add_argument("--test_set", help="test set of the steps, ablation and modern "
                        "tables/figures (default hard, else original)")
    parser.add_argument("--det", nargs="*", metavar="RUN",
                        help="also draw det.png/pdf: DET curves of these runs (folders below "
                        "RUNS_ROOT, as in results.csv; none named: every run with score files)")
    args = parser.parse_args(argv)
    if not args.runs_root.is_dir():
        parser.error(f"{args.runs_root} is not a folder")
    out = args.out or args.runs_root / "results"
    out.mkdir(parents=True, exist_ok=True)
    frame = collect(args.runs_root)
    frame.to_csv(out / "results.csv", index=False)
    write_markdown(frame, out / "results.md", args.lr_test_set, args.test_set)
    written = [out / "results.csv", out / "results.md"]
    if not frame.empty:
        written += plot_lr(frame, out, args.lr_test_set)
        written += plot_steps(frame, out, args.test_set)
        written += plot_ablation(frame, out, args.test_set)
        written += plot_modern(frame, out, args.test_set)
        written += plot_demo(frame, out)
    if args.det is not None:
        try:
            written += plot_det(args.runs_root, out, args.det or None)
        except ValueError as err:
            parser.error(str(err))
    n_div = int(frame["diverged"].sum()) if not frame.empty else 0
    print(f"{len(frame)} runs ({n_div} diverged) -> " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
