"""Run folders below a runs root as one frame, a row per run (``results.csv``).

A row holds the run's grid point (from the folder layout of :mod:`lowres.study.grids.runs`,
else from hyperparams.yaml), its status, whether it diverged, and per test set the EER
(in %), minDCF and number of trials of the best checkpoint; beyond the study, the run it
started from, the EERs of its averaged checkpoints and how many of its parameters trained.
Where results.json has the speaker-bootstrap intervals of these metrics, ``lo_<column>``
and ``hi_<column>`` hold them (:mod:`lowres.study.results.intervals` adds them from the
score files of runs evaluated before, and the intervals of seed groups).  The tables and
figures read only this frame, so a run folder is parsed in one place.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from lowres.io.run_folder import (
    EVAL,
    RUN_MARKERS,
    SAVE,
    hyperparams_path,
    read_parameters,
    read_results,
    results_path,
    train_log_path,
)
from lowres.study.grids.runs import parse_run_path

__all__ = ["HPARAM_KEYS", "INTERVAL_PREFIXES", "METRICS", "as_float", "as_norm_columns",
           "collect", "diverged_in_log", "eer_column", "find_runs", "flatten_results",
           "interval_columns", "parameter_columns", "read_hparams", "read_run",
           "stage_columns"]

SKIP_DIRS = {SAVE, EVAL, "results", "__pycache__"}
HPARAM_KEYS = (
    "lr", "max_steps", "seed", "batch_size", "lr_schedule", "regularisation", "reset_weights",
    "completely_freeze_feature_extractor", "wav2vec_initially_frozen", "num_frozen_steps",
    "enroll_training_data", "post_process_scores", "precision", "ssl_adaptation",
    "ssl_adaptation_lr", "ssl_pooling", "subset", "model_name",
)
METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05", "n_trials")
# lo_<column> / hi_<column>: a run's interval of a metric column; seeds_lo_ / seeds_hi_: its
# seed group's (lowres.study.results.intervals)
INTERVAL_PREFIXES = ("lo_", "hi_", "seeds_lo_", "seeds_hi_")
_SCALAR = re.compile(r"^([A-Za-z_][\w.]*):[ \t]*([^\n#!&*][^\n#]*?)?[ \t]*(?:#.*)?$", re.M)
_INDENTED = re.compile(r"(?:[ \t]+[^\n]*(?:\n|$))+")
_NAN_LOSS = re.compile(r"loss[^:=\n]*[:=]\s*[-+]?(nan|inf)\b", re.I)


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
    text = path.read_text(errors="replace")
    for match in _SCALAR.finditer(text):
        key, raw = match.groups()
        if raw:
            try:
                values[key] = yaml.safe_load(raw)
            except yaml.YAMLError:
                values[key] = raw
            continue
        # a long value the writer folded onto the indented lines below its key
        block = _INDENTED.match(text, match.end() + 1)
        if block and block.group(0).strip():
            try:
                value = yaml.safe_load(f"{key}:\n{block.group(0)}")[key]
            except yaml.YAMLError:  # tags (!new:, !ref) of objects: not a scalar
                continue
            if not isinstance(value, (dict, list)):
                values[key] = value
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


def as_float(value: object) -> float:
    """`value` as a float; NaN for a missing or non-numeric one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_run(root: Path, folder: Path) -> dict:
    """The row of one run folder (see the module docstring)."""
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
        row["lr"] = as_float(row["lr"])
    results_file = results_path(folder)
    data = read_results(folder) or {}
    results = flatten_results(data) if isinstance(data, dict) else {}
    nan_eer = False
    for test_set, metrics in results.items():
        eer = as_float(metrics.get("eer"))
        nan_eer |= math.isnan(eer)
        row[f"eer_pct_{test_set}"] = 100.0 * eer
        row.update(interval_columns(eer_column(test_set), metrics, "eer", 100.0))
        for metric in METRICS[1:]:
            row[f"{metric}_{test_set}"] = as_float(metrics.get(metric))
            row.update(interval_columns(f"{metric}_{test_set}", metrics, metric))
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
    row.update(parameter_columns(folder))
    return row


def parameter_columns(folder: Path) -> dict:
    """``trainable_parameters`` and ``total_parameters`` of the run's model, from the
    parameters.json training wrote; none for a run without one."""
    found = read_parameters(folder)
    if not isinstance(found, dict):
        return {}
    return {"trainable_parameters": as_float(found.get("trainable")),
            "total_parameters": as_float(found.get("total"))}


def eer_column(test_set: str, checkpoint: str = "best", as_norm: bool = False) -> str:
    """The column of a test set's EER (%) of the ``best`` or ``averaged`` checkpoint, raw or
    after AS-norm: ``[averaged_][as_norm_]eer_pct_<test set>``."""
    return (f"{'averaged_' if checkpoint == 'averaged' else ''}"
            f"{'as_norm_' if as_norm else ''}eer_pct_{test_set}")


def interval_columns(column: str, metrics: dict, metric: str, scale: float = 1.0) -> dict:
    """``lo_<column>`` and ``hi_<column>``: the interval of ``metric`` in a results.json
    entry's ``intervals`` (times ``scale``), when it has one."""
    intervals = metrics.get("intervals")
    if not isinstance(intervals, dict) or not isinstance(intervals.get(metric), list):
        return {}
    low, high = intervals[metric]
    return {f"lo_{column}": scale * as_float(low), f"hi_{column}": scale * as_float(high)}


def as_norm_columns(test_set: str, metrics: dict, checkpoint: str = "best") -> dict:
    """The EER after AS-norm (:func:`eer_column`) and its interval, when tested with it."""
    as_norm = metrics.get("as_norm")
    if not isinstance(as_norm, dict):
        return {}
    column = eer_column(test_set, checkpoint, as_norm=True)
    return {column: 100.0 * as_float(as_norm.get("eer")),
            **interval_columns(column, as_norm, "eer", 100.0)}


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
            column = eer_column(test_set, "averaged")
            row[column] = 100.0 * as_float(metrics.get("eer"))
            row.update(interval_columns(column, metrics, "eer", 100.0))
            row.update(as_norm_columns(test_set, metrics, "averaged"))
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
    metric_cols += sorted(c for c in frame.columns if c.startswith(INTERVAL_PREFIXES))
    first = ["run", "grid", "model", "subset", "tag", *[k for k in HPARAM_KEYS
             if k not in ("model_name", "subset")], "status", "diverged", "parent_run",
             "averaged", "trainable_parameters", "total_parameters"]
    return frame[[c for c in first if c in frame.columns] + metric_cols]
