"""The study's experiment grids, each defined once as data (docs/study.md, 'The experiment grids').

A grid is a generator of grid points (model, subset, folder-name parts, overrides, tag);
:mod:`lowres.study.grids.runs` expands it to a list of :class:`~lowres.study.grids.runs.Run` s,
one `recipes/VoxCeleb/train.py` command each.  The same list, in the same order, is used by
the local runner (`python -m lowres.grid run`), by the SLURM array scripts
(`slurm/*.sbatch`, array index = position in the list) and by `python -m lowres.grid list`.

Translation of the study's hydra overrides (the commands of its README, docs/study.md,
'The experiment grids') to our hparams keys:

==============================================  =====================================
study (hydra)                                   lowres (train.py override)
==============================================  =====================================
``+experiment=<model>_<subset>``                ``hparams/<model>_<subset>.yaml``
``+experiment=ablation_wav2vec2_<subset>``      ``hparams/ablation_wav2vec2_<subset>.yaml``
``optim.algo.lr=X``                             ``lr=X``
``trainer.max_steps=N``                         ``max_steps=N``
``seed=S``                                      ``seed=S``
``enroll_training_data`` / ``post_process_      same names
scores``
``data.use_additional_test_sets=true``          ``test_sets=[original, extended, hard]``
``optim/schedule=constant|exp_decay``           ``lr_schedule=constant|exp_decay``
``++optim.schedule.scheduler.step_size_up=      ``lr_schedule=one_cycle`` (half-cycle
25_000`` (and ``step_size_down``)               25k: one cycle in 50k steps)
``network/regularisation=wav2vec2_<preset>``    ``regularisation=<preset>``
``++network.<flag>=<value>``                    ``<flag>=<value>``
``hydra/launcher=slurm_11vram|slurm_24vram``    GPU class (:data:`GPU_CLASS`), not an
                                                override
==============================================  =====================================

Every command also gets ``evaluate_after_training=true`` and ``test_sets=[original,
extended, hard]`` (:data:`COMMON`): a grid run is only finished once
``OUT/eval/best/results.json`` is written, and, as every run of the study (each of its
data configs had ``use_additional_test_sets: true``; docs/study.md, 'Training and
evaluation in the published runs'), it tests on VoxCeleb1-O, -E and -H.  Runs without a
seed (the LR grids) use the recipe's, 42133724, the original's default.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, partial
from pathlib import Path
from typing import NamedTuple

import yaml

__all__ = [
    "MODELS", "SUBSETS", "GRIDS", "STUDY_GRIDS", "LOCAL_GRIDS", "ALL_GRIDS", "GPU_CLASS",
    "ALL_TEST_SETS", "DEMO_SUBSETS", "DEMO_STARTS", "DEMO_RUNS", "DEMO_MODEL_ORDER",
    "MODERN_STAGES", "SECTION_TAGS",
    "GRID_SECTIONS", "EXPERIMENT_GRIDS", "GRID_FAMILY", "ADAPTATION_METHODS", "ADAPTATION_GRIDS",
    "ADAPTATION_LABELS", "adaptation_methods", "model_sections", "stage_overrides",
    "format_value", "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parents[3]

MODELS = ("xvector", "ecapa", "wav2vec2")
SUBSETS = ("full", "tiny_few", "tiny_many_low", "tiny_many_high")

# GPU memory class each model asked for in the study (hydra launchers slurm_11vram /
# slurm_24vram); used by `python -m lowres.grid sbatch` to pick sbatch arguments.
GPU_CLASS = {"xvector": "11GB", "ecapa": "11GB", "wav2vec2": "24GB"}

# `data.use_additional_test_sets=true`: VoxCeleb1-E and -H besides VoxCeleb1-O.
ALL_TEST_SETS = {"test_sets": "[original, extended, hard]"}

# Added to every grid run: train, then evaluate the best checkpoint (results.json) on O, E
# and H: every data config of the study had the extra test sets on, so every published
# run, LR grids included, was tested on all three (a few commands also said so).
COMMON = {"evaluate_after_training": True, **ALL_TEST_SETS}

# Step counts of the recipe (hparams/shared/*.yaml; docs/study.md, 'Models' and 'Training
# recipe') that `step_scale` shrinks together, so that a CPU-sized run keeps the shape of
# the study's schedules.
DEFAULT_MAX_STEPS = 50_000
DEFAULT_NUM_FROZEN_STEPS = 12_500  # wav2vec2: the first LR cycle of a 50k-step run
ONE_CYCLE_HALF_STEPS = 25_000

# The study's evaluation switches for the LR grids (every LR-grid command of
# the study; docs/study.md, 'LR grids').
NO_SCORE_NORM = {"enroll_training_data": False, "post_process_scores": False}

# ---------------------------------------------------------------------------
# naive LR grid: every model x subset, lr 1e-7 ... 1e-2 (decades)
NAIVE_LRS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)

# ---------------------------------------------------------------------------
# detailed LR grid: {1.78, 3.16, 5.62} x 10^k around the naive winner
# (docs/study.md, 'LR grids')
_HIGH = (1.78e-3, 3.16e-3, 5.62e-3, 1.78e-2, 3.16e-2, 5.62e-2)
DETAILED_LRS = {
    "xvector": {
        "full": (1.78e-4, 3.16e-4, 5.62e-4, 1.78e-3, 3.16e-3, 5.62e-3),
        "tiny_few": _HIGH,
        "tiny_many_low": (1.78e-5, 3.16e-5, 5.62e-5, 1.78e-4, 3.16e-4, 5.62e-4),
        "tiny_many_high": _HIGH,
    },
    "ecapa": {subset: _HIGH for subset in SUBSETS},
    "wav2vec2": {
        "full": (1.78e-5, 3.16e-5, 5.62e-5, 1.78e-4, 3.16e-4, 5.62e-4),
        "tiny_few": (1.78e-6, 3.16e-6, 5.62e-6, 1.78e-5, 3.16e-5, 5.62e-5),
        "tiny_many_low": (1.78e-5, 3.16e-5, 5.62e-5, 1.78e-4, 3.16e-4, 5.62e-4),
        "tiny_many_high": (1.78e-5, 3.16e-5, 5.62e-5, 1.78e-4, 3.16e-4, 5.62e-4),
    },
}

# ---------------------------------------------------------------------------
# steps: best lr per cell, max_steps x 3 seeds, extra test sets on
# (tag "step_exp"; docs/study.md, 'Steps')
STEPS_MAX_STEPS = (25_000, 50_000, 100_000, 400_000)
STEPS_CELLS = {  # model -> subset -> (best lr, seeds)
    "xvector": {
        "full": (3.16e-3, (51412, 38396, 11558)),
        "tiny_few": (1.78e-2, (7348, 12935, 6622)),
        "tiny_many_low": (1.00e-4, (30921, 90124, 70956)),
        "tiny_many_high": (1.78e-3, (32188, 60801, 73677)),
    },
    "ecapa": {
        "full": (5.62e-3, (69317, 43142, 8754)),
        "tiny_few": (1.78e-2, (87510, 83832, 49529)),
        "tiny_many_low": (5.62e-3, (54190, 54160, 86823)),
        "tiny_many_high": (5.62e-3, (89540, 80774, 47997)),
    },
    "wav2vec2": {
        "full": (1.782e-4, (69317, 43142, 8754)),
        "tiny_few": (5.62e-6, (62204, 20427, 456)),
        "tiny_many_low": (1.782e-4, (45979, 43354, 68179)),
        "tiny_many_high": (1.782e-4, (73232, 95015, 69018)),
    },
}
# x-vector's step runs switch AS-norm off, ECAPA's and wav2vec2's switch it on, as the study's
# commands did: the yaml's as_norm_variant, one_sided_whole_cohort, is the original's AS-norm.
# The published figures plot the raw cosine EER in every case, and so do lowres.results'
# tables (eer_pct_*; the AS-norm EER is a column of its own, as_norm_eer_pct_*).
STEPS_SCORE_NORM = {
    "xvector": NO_SCORE_NORM,
    "ecapa": {"enroll_training_data": True, "post_process_scores": True},
    "wav2vec2": {"enroll_training_data": True, "post_process_scores": True},
}

# ---------------------------------------------------------------------------
# wav2vec2 ablation (experiment ablation_wav2vec2_<subset> = hparams/ablation_wav2vec2_
# <subset>.yaml: 50k steps, cyclic LR, backbone frozen for the first 12,500 steps, CNN
# always frozen, default regularisation, lr 5.62e-6 / 1.78e-4 as in ABLATION_LR).
# The study reports the ablation on VoxCeleb1-H (every run tests O, E and H: COMMON).
# enroll_training_data / post_process_scores are not set by the study's commands: the
# hparams defaults apply.
ABLATION_LR = {"tiny_few": 5.62e-6, "tiny_many_high": 1.78e-4}
ABLATION_BASELINE_SEEDS = (787, 23916)
ABLATION_SEEDS = (11469, 787, 23916)
ABLATION_VARIANTS: dict[str, dict[str, object]] = {  # the study's tag -> overrides
    "baseline": {},
    "lr_constant": {"lr_schedule": "constant"},
    "lr_exp_decay": {"lr_schedule": "exp_decay"},
    "lr_1_cycle": {"lr_schedule": "one_cycle"},
    "weights_random_init": {
        "reset_weights": True,
        "completely_freeze_feature_extractor": False,
        "wav2vec_initially_frozen": False,
    },
    "weights_no_freeze": {
        "completely_freeze_feature_extractor": False,
        "wav2vec_initially_frozen": False,
    },
    "weights_freeze_cycle": {
        "completely_freeze_feature_extractor": False,
        "wav2vec_initially_frozen": True,
        "num_frozen_steps": 12500,
    },
    "weights_freeze_cycle_cnn": {  # despite the tag: only the CNN is frozen
        "completely_freeze_feature_extractor": True,
        "wav2vec_initially_frozen": False,
    },
    "reg_none": {"regularisation": "none"},
    "reg_dropout": {"regularisation": "only_dropout"},
    "reg_mask": {"regularisation": "only_masking"},
    "reg_layerdrop": {"regularisation": "only_layerdrop"},
}
# Human-readable names used by the results table / figure (docs/study.md, 'The experiment grids').
ABLATION_LABELS = {
    "baseline": "baseline",
    "lr_constant": "LR constant",
    "lr_exp_decay": "LR exp. decay",
    "lr_1_cycle": "LR 1 cycle",
    "weights_random_init": "random init",
    "weights_no_freeze": "nothing frozen",
    "weights_freeze_cycle": "freeze 1st cycle only",
    "weights_freeze_cycle_cnn": "freeze CNN only",
    "reg_none": "no regularisation",
    "reg_dropout": "only dropout",
    "reg_mask": "only masking",
    "reg_layerdrop": "only layerdrop",
}


# ---------------------------------------------------------------------------
def format_value(value) -> str:
    """A value as written on the command line and in folder names.

    Floats use the shortest exact scientific form with a mantissa dot
    (``1.0e-07``, ``1.782e-04``): YAML 1.1 and 1.2 both read it as a float.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        for digits in range(1, 17):
            text = f"{value:.{digits}e}"
            if float(text) == value:
                return text
        return repr(value)
    return str(value)


# ---------------------------------------------------------------------------
# grid points: (model, subset, point parts, overrides, tag)
def _naive_points():
    for model in MODELS:
        for subset in SUBSETS:
            for lr in NAIVE_LRS:
                overrides = {"lr": lr, **NO_SCORE_NORM}
                yield model, subset, (("lr", format_value(lr)),), overrides, None


def _detailed_points():
    for model in MODELS:
        for subset in SUBSETS:
            for lr in DETAILED_LRS[model][subset]:
                overrides = {"lr": lr, **NO_SCORE_NORM}
                yield model, subset, (("lr", format_value(lr)),), overrides, None


def _steps_points(best_lr: Mapping[tuple[str, str], float] | None = None):
    for model in MODELS:
        for subset in SUBSETS:
            lr, seeds = STEPS_CELLS[model][subset]
            lr = (best_lr or {}).get((model, subset), lr)
            for max_steps in STEPS_MAX_STEPS:
                for seed in seeds:
                    overrides = {
                        "lr": lr, **STEPS_SCORE_NORM[model], "max_steps": max_steps,
                        "seed": seed,
                    }
                    point = (("lr", format_value(lr)), ("steps", str(max_steps)),
                             ("seed", str(seed)))
                    yield model, subset, point, overrides, None


def _ablation_points():
    for subset in ABLATION_LR:  # the lr is set by hparams/ablation_wav2vec2_<subset>.yaml
        for tag, variant in ABLATION_VARIANTS.items():
            seeds = ABLATION_BASELINE_SEEDS if tag == "baseline" else ABLATION_SEEDS
            for seed in seeds:
                overrides = {**variant, "seed": seed}
                yield "wav2vec2", subset, (("seed", str(seed)),), overrides, tag


# ---------------------------------------------------------------------------
# modern (beyond the study): how much of the modern toolbox still helps on ~50k
# files. Per model x subset, at the steps grid's best lr and with its seeds, the recipe's
# 50k steps, three runs: the study's recipe; + augmentation; + a large-margin stage from the
# augmented run, tested with its last checkpoints averaged, without and with AS-norm
# (its eval/averaged/results.json has both). The toolbox's four steps are read from these
# runs by lowres.study.results.tables (MODERN_STEPS). Each stage's values are override files
# in hparams/overrides/ (also usable with any other grid or train.py); they replace the
# common overrides of a grid command for that stage's runs (so a CPU-sized max_steps for
# the first two stages leaves the large-margin stage its own), and a ``<stage>:`` mapping
# in an overrides file (or --set <stage>.key=value) replaces them in turn.
MODERN_STAGES: dict[str, tuple[tuple[str, ...], str | None]] = {  # tag -> (files, parent tag)
    "study": ((), None),
    "augment": (("augment",), None),
    "large_margin": (("augment", "large_margin", "averaging", "as_norm"), "augment"),
}
OVERRIDES_FOLDER = REPO_ROOT / "hparams" / "overrides"


@cache
def _override_file(name: str) -> tuple[dict, dict[str, dict]]:
    path = OVERRIDES_FOLDER / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected 'key: value' lines")
    return model_sections(data)


def stage_overrides(tag: str, model: str) -> dict:
    """The values of modern stage `tag` for `model`'s runs, from its override files in order
    (each file's top-level keys, then its ``<model>:`` section)."""
    out: dict = {}
    for name in MODERN_STAGES[tag][0]:
        common, per_model = _override_file(name)
        out.update(common)
        out.update(per_model.get(model, {}))
    return out


def _modern_points(best_lr: Mapping[tuple[str, str], float] | None = None):
    for model in MODELS:
        for subset in SUBSETS:
            lr, seeds = STEPS_CELLS[model][subset]
            lr = (best_lr or {}).get((model, subset), lr)
            for seed in seeds:
                point = (("lr", format_value(lr)), ("seed", str(seed)))
                for tag in MODERN_STAGES:
                    yield model, subset, point, {"lr": lr, **NO_SCORE_NORM, "seed": seed}, tag




# ---------------------------------------------------------------------------
# demo (not a grid of the study; `make demo`, lowres/demo.py): every model on the three
# tiny subsets, once, with the CPU-sized settings of hparams/overrides/cpu_demo.yaml
# (given with --overrides, where also each model's lr lives).  Folder
# RUNS_ROOT/demo/<model>_<subset>/trained; lowres.study.demo puts the untrained model of each
# architecture beside it, in RUNS_ROOT/demo/<model>_tiny_few/untrained.
DEMO_SUBSETS = ("tiny_few", "tiny_many_low", "tiny_many_high")
# The leaf folders of the demo's runs, trained and untrained: no other grid names a run so,
# so they tell a demo run wherever its runs root lies and whatever that folder is called.
DEMO_RUNS = ("trained", "untrained")


# The demo's wav2vec2 starts twice (tags, folder RUNS_ROOT/demo/wav2vec2_<subset>/<tag>/trained):
# from random weights, trained whole (as the demo always ran it), and from the demo's own
# self-supervised pre-training on unlabelled speakers (lowres.study.demo's pretrain stage),
# fine-tuned with the study's recipe (CNN frozen, first cycle frozen). A `<tag>:` mapping
# in an overrides file (cpu_demo.yaml) holds each start's values.
DEMO_STARTS = ("random_init", "pretrained")


# The demo's models in the order its runs start: the longest first (wav2vec2, 600 steps;
# ECAPA-TDNN, the quickest, last), so that a few jobs sharing the runs end together.
DEMO_MODEL_ORDER = ("wav2vec2", "xvector", "ecapa")


def _demo_points():
    for model in DEMO_MODEL_ORDER:
        for subset in DEMO_SUBSETS:
            for tag in DEMO_STARTS if model == "wav2vec2" else (None,):
                yield model, subset, (("", DEMO_RUNS[0]),), {}, tag


# ---------------------------------------------------------------------------
# adaptation (beyond the study): which way to adapt a pre-trained wav2vec2 with few labels,
# on few speakers or few sessions. Per subset, five methods (tags): the study's recipe
# (every weight fine-tunes, last layer's mean); the backbone frozen under MHFA; LoRA and
# bottleneck adapters under MHFA; LoRA under the study's mean (the back-end's effect apart
# from the adaptation's). Each method's values and learning rates (one grid point each) are
# hparams/grids/adaptation.yaml, every run at each seed of its subset's steps-grid cell;
# folder RUNS_ROOT/<grid>/wav2vec2_<subset>/<method>/lr<lr>_seed<seed>. Unlike other grids'
# values, a method's win over the command's common and per-model overrides (laid over them
# in lowres.study.grids.runs), so a CPU-sized wav2vec2 lr leaves each method its own.
# adaptation_demo runs the same methods on the demo's three tiny subsets, from the demo's
# pre-trained wav2vec2 (the demo's `pretrained` start, whose `pretrained:` section of an
# overrides file applies to every run, beneath the method's values), at the demo's sizes.
ADAPTATION_METHODS = ("study", "frozen_mhfa", "lora_mhfa", "adapter_mhfa", "lora_mean")
# Names used by the results tables / figure
ADAPTATION_LABELS = {"study": "study recipe", "frozen_mhfa": "frozen + MHFA",
                     "lora_mhfa": "LoRA + MHFA", "adapter_mhfa": "adapters + MHFA",
                     "lora_mean": "LoRA + mean"}
ADAPTATION_FILE = REPO_ROOT / "hparams" / "grids" / "adaptation.yaml"


class AdaptationGrid(NamedTuple):
    subsets: tuple[str, ...]
    start: str | None  # the demo start (DEMO_STARTS) whose section every run takes


ADAPTATION_GRIDS = {"adaptation": AdaptationGrid(SUBSETS, None),
                    "adaptation_demo": AdaptationGrid(DEMO_SUBSETS, "pretrained")}


@cache
def adaptation_methods() -> dict[str, dict]:
    """method -> {"values": its train.py values, "lrs": {grid: [lr entry, ...] or None}}
    from ADAPTATION_FILE; an lr entry maps ``lr`` (and ``ssl_adaptation_lr``) to floats,
    None: the subset's lr of the steps grid. ValueError naming the file when it lacks a
    method or a grid, or an entry is no such mapping or repeats an lr (it names the folder)."""
    data = yaml.safe_load(ADAPTATION_FILE.read_text()) or {}
    if not isinstance(data, dict) or set(data) != set(ADAPTATION_METHODS):
        raise ValueError(f"{ADAPTATION_FILE}: expected one section per method, "
                         f"{', '.join(ADAPTATION_METHODS)}")
    for method, spec in data.items():
        where = f"{ADAPTATION_FILE}, {method}"
        if not isinstance(spec, dict) or not isinstance(spec.get("values"), dict) \
                or not isinstance(spec.get("lrs"), dict) \
                or set(spec["lrs"]) != set(ADAPTATION_GRIDS):
            raise ValueError(f"{where}: expected 'values' (a mapping) and 'lrs' (a list or "
                             f"null per grid: {', '.join(ADAPTATION_GRIDS)})")
        for grid, entries in spec["lrs"].items():
            if entries is not None:
                spec["lrs"][grid] = _lr_entries(entries, f"{where}, lrs of {grid}")
    return data


def _lr_entries(entries, where: str) -> list[dict[str, float]]:
    try:
        out = [{key: float(value) for key, value in entry.items()} for entry in entries]
    except (AttributeError, TypeError, ValueError):
        out = []
    if not out or not all("lr" in e for e in out) or len({e["lr"] for e in out}) != len(out):
        raise ValueError(f"{where}: expected a list of mappings of lr (and ssl_adaptation_lr) "
                         "to numbers, each lr once (it names the run folder)")
    return out


def _adaptation_points(grid: str):
    methods = adaptation_methods()
    for subset in ADAPTATION_GRIDS[grid].subsets:
        study_lr, seeds = STEPS_CELLS["wav2vec2"][subset]
        for method in ADAPTATION_METHODS:
            values = methods[method]["values"]
            for entry in methods[method]["lrs"][grid] or [{"lr": study_lr}]:
                for seed in seeds:
                    point = (("lr", format_value(entry["lr"])), ("seed", str(seed)))
                    yield "wav2vec2", subset, point, {**values, **entry, "seed": seed}, method


GRIDS = {
    "naive_lr": _naive_points,
    "detailed_lr": _detailed_points,
    "steps": _steps_points,
    "ablation": _ablation_points,
    "modern": _modern_points,
    "adaptation": partial(_adaptation_points, "adaptation"),
}
STUDY_GRIDS = ("naive_lr", "detailed_lr", "steps", "ablation")  # the study's own
# Grids run locally only (no slurm/<grid>.sbatch, not in the study's counts).
LOCAL_GRIDS = {"demo": _demo_points,
               "adaptation_demo": partial(_adaptation_points, "adaptation_demo")}
ALL_GRIDS = {**GRIDS, **LOCAL_GRIDS}
# the tags whose `<tag>:` sections of an overrides file apply to a grid's runs of that tag
# (adaptation_demo: also its start's, to every run)
GRID_SECTIONS = {"modern": tuple(MODERN_STAGES), "demo": DEMO_STARTS,
                 **{grid: (*ADAPTATION_METHODS, *([spec.start] if spec.start else []))
                    for grid, spec in ADAPTATION_GRIDS.items()}}
SECTION_TAGS = tuple(dict.fromkeys((*MODERN_STAGES, *DEMO_STARTS, *ADAPTATION_METHODS)))

# ---------------------------------------------------------------------------
# experiments beyond the study's cells: any hparams/<name>.yaml (e.g. wavlm_base_plus_tiny_few)
# runs in the LR grids without code changes: the grid reads the file's model_name and subset
# and gives it the grid points of that model family and subset.
EXPERIMENT_GRIDS = ("naive_lr", "detailed_lr")
# families of ours -> the study's model whose grid points, step scaling (num_frozen_steps),
# per-model overrides and GPU class they take: ssl_ecapa is wav2vec2's backbone recipe
GRID_FAMILY = {"ssl_ecapa": "wav2vec2"}


def model_sections(overrides: Mapping[str, object]) -> tuple[dict, dict[str, dict]]:
    """Split an overrides mapping into (every run, {model or stage: its runs only}).

    A top-level key named after a model (``xvector``, ``ecapa``, ``wav2vec2``), a stage
    of the modern grid (:data:`MODERN_STAGES`), a start of the demo's wav2vec2
    (:data:`DEMO_STARTS`) or a method of the adaptation grids (:data:`ADAPTATION_METHODS`)
    whose value is a mapping holds that model's or tag's overrides; every other key applies
    to every run::

        batch_size: 32          # every run
        ecapa: {lr: 5.0e-3, ecapa_channels: 128}
        large_margin: {max_steps: 100}
    """
    common, per_model = {}, {}
    for key, value in overrides.items():
        if (key in MODELS or key in SECTION_TAGS) and isinstance(value, Mapping):
            per_model[key] = dict(value)
        else:
            common[key] = value
    return common, per_model

