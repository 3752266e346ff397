"""The study's experiment grids, each defined once as data (docs/study.md, 'The experiment grids').

A grid expands to a list of :class:`Run` s, one `recipes/VoxCeleb/train.py`
command each.  The same list, in the same order, is used by the local runner
(`python -m lowres.grid run`), by the SLURM array scripts (`slurm/*.sbatch`,
array index = position in the list) and by `python -m lowres.grid list`.

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

Run folders encode the grid point like hparams/shared/base.yaml's default folder:
``RUNS_ROOT/<grid>/<model>_<subset>/lr<lr>[_steps<max_steps>_seed<seed>]``
and, for the ablation, ``RUNS_ROOT/ablation/wav2vec2_<subset>/<tag>/seed<seed>``
(tags as in the study's commands); for the modern grid (not the study's)
``RUNS_ROOT/modern/<model>_<subset>/<stage>/lr<lr>_seed<seed>``.  :func:`parse_run_path`
reads them back.  No ``=`` anywhere: SpeechBrain splits ``--key=value`` arguments at every ``=``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from lowres.io.run_folder import is_finished

__all__ = [
    "MODELS", "SUBSETS", "GRIDS", "LOCAL_GRIDS", "ALL_GRIDS", "GPU_CLASS", "ALL_TEST_SETS",
    "DEMO_SUBSETS", "DEMO_STARTS", "MODERN_STAGES", "SECTION_TAGS", "Run", "expand",
    "model_sections", "stage_overrides",
    "format_value", "parse_run_path", "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = "recipes/VoxCeleb/train.py"  # $LOWRES_TRAIN_SCRIPT replaces it (tests, forks)

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


@dataclass(frozen=True)
class Run:
    """One grid point: an hparams file, its overrides and its output folder."""

    grid: str
    model: str
    subset: str
    point: tuple[tuple[str, str], ...]  # folder-name parts, in order (e.g. lr, steps, seed)
    overrides: dict = field(hash=False, compare=False)  # key -> value passed to train.py
    output_folder: Path = field(hash=False, compare=False)
    tag: str | None = None  # ablation variant or modern stage
    experiment: str = ""  # hparams/<experiment>.yaml (default <model>_<subset>)
    parent: Path | None = field(default=None, hash=False, compare=False)  # init_from_run

    @property
    def hparams_file(self) -> str:
        return f"hparams/{self.experiment or self.cell}.yaml"

    @property
    def cell(self) -> str:
        return f"{self.model}_{self.subset}"

    def argv(self, python: str = "python") -> list[str]:
        """The train.py command, to be run from the repository root."""
        script = os.environ.get("LOWRES_TRAIN_SCRIPT") or TRAIN_SCRIPT
        args = [python, script, self.hparams_file]
        args += [f"--{key}={format_value(value)}" for key, value in self.overrides.items()]
        args.append(f"--output_folder={self.output_folder}")
        return args

    def command(self, python: str = "python") -> str:
        return shlex.join(self.argv(python))

    def finished(self) -> bool:
        return is_finished(self.output_folder)




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
# runs by lowres.study.results (MODERN_STEPS). Each stage's values are override files in
# hparams/overrides/ (also usable with any other grid or train.py); they replace the
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


GRIDS = {
    "naive_lr": _naive_points,
    "detailed_lr": _detailed_points,
    "steps": _steps_points,
    "ablation": _ablation_points,
    "modern": _modern_points,
}
STUDY_GRIDS = ("naive_lr", "detailed_lr", "steps", "ablation")  # the study's own


# ---------------------------------------------------------------------------
# demo (not a grid of the study; `make demo`, lowres/demo.py): every model on the three
# tiny subsets, once, with the CPU-sized settings of hparams/overrides/cpu_demo.yaml
# (given with --overrides, where also each model's lr lives).  Folder
# RUNS_ROOT/demo/<model>_<subset>/trained; lowres.study.demo puts the untrained model of each
# architecture beside it, in RUNS_ROOT/demo/<model>_tiny_few/untrained.
DEMO_SUBSETS = ("tiny_few", "tiny_many_low", "tiny_many_high")


# The demo's wav2vec2 starts twice (tags, folder RUNS_ROOT/demo/wav2vec2_<subset>/<tag>/trained):
# from random weights, trained whole (as the demo always ran it), and from the demo's own
# self-supervised pre-training on unlabelled speakers (lowres.study.demo's pretrain stage),
# fine-tuned with the study's recipe (CNN frozen, first cycle frozen). A `<tag>:` mapping
# in an overrides file (cpu_demo.yaml) holds each start's values.
DEMO_STARTS = ("random_init", "pretrained")


def _demo_points():
    for model in MODELS:
        for subset in DEMO_SUBSETS:
            for tag in DEMO_STARTS if model == "wav2vec2" else (None,):
                yield model, subset, (("", "trained"),), {}, tag


# Grids run locally only (no slurm/<grid>.sbatch, not in the study's counts).
LOCAL_GRIDS = {"demo": _demo_points}
ALL_GRIDS = {**GRIDS, **LOCAL_GRIDS}
# the tags whose `<tag>:` sections of an overrides file apply to a grid's runs of that tag
GRID_SECTIONS = {"modern": tuple(MODERN_STAGES), "demo": DEMO_STARTS}
SECTION_TAGS = (*MODERN_STAGES, *DEMO_STARTS)


def _folder(runs_root: Path, grid: str, model: str, subset: str, point, tag) -> Path:
    name = "_".join(f"{key}{value}" for key, value in point)
    base = Path(runs_root) / grid / f"{model}_{subset}"
    return base / tag / name if tag else base / name


def _select(values: Iterable[str] | None, known: tuple[str, ...], what: str) -> set[str] | None:
    if values is None:
        return None
    chosen = set()
    for value in values:
        for item in str(value).split(","):
            item = item.strip()
            if not item or item == "all":
                continue
            if item not in known:
                raise ValueError(f"unknown {what} {item!r}; choose from {', '.join(known)}")
            chosen.add(item)
    return chosen or None


def expand(
    grid: str,
    runs_root: Path | str = "runs",
    models: Iterable[str] | None = None,
    subsets: Iterable[str] | None = None,
    tags: Iterable[str] | None = None,
    extra: Mapping[str, object] | None = None,
    best_lr: Mapping[tuple[str, str], float] | None = None,
    step_scale: float | None = None,
    model_extra: Mapping[str, Mapping[str, object]] | None = None,
    stage_extra: Mapping[str, Mapping[str, object]] | None = None,
    n_seeds: int | None = None,
) -> list[Run]:
    """Expand `grid` into its runs, in a fixed order (the SLURM array index order).

    `models`, `subsets`, `tags` (ablation variants) restrict the grid (comma-separated
    strings allowed; "all" = no restriction).  `extra` overrides are applied to every
    run (they replace a grid value of the same key, e.g. a CPU-sized max_steps) but do
    not change the run folders, which always encode the grid point.  `best_lr` maps
    (model, subset) to the lr the `steps` grid uses instead of the study's best lr (e.g.
    the winner of our own LR grids, lowres.study.results.best_lrs); the folders then say so.
    `step_scale` (e.g. 0.001 for a CPU demo) multiplies every step count of a run:
    max_steps (the grid's or the recipe's 50k), wav2vec2's num_frozen_steps and, with the
    one_cycle schedule, its half-cycle, so 25k/50k/100k/400k stay distinct and the
    freeze still covers the first LR cycle; `extra` still wins over the scaled values.
    `model_extra` maps a model to overrides for its runs only (applied after `extra`),
    e.g. a CPU-sized ECAPA width or each model's lr (see :func:`model_sections`); its
    entries named after a tag of :data:`GRID_SECTIONS` join `stage_extra` in this grid and
    are left out of the others.
    In the modern grid, each stage's values (:func:`stage_overrides`, step counts scaled
    by `step_scale`) come after those, then `stage_extra` (stage tag -> overrides); a
    stage with a parent gets ``init_from_run`` = the parent stage's run folder. In the
    demo grid, `stage_extra` holds each wav2vec2 start's (:data:`DEMO_STARTS`).
    `n_seeds` keeps the first N seeds of each cell (grids whose points have a seed).
    """
    if grid not in ALL_GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose from {', '.join(ALL_GRIDS)}")
    want_models = _select(models, MODELS, "model")
    want_subsets = _select(subsets, SUBSETS, "subset")
    want_tags = _select(tags, (*ABLATION_VARIANTS, *SECTION_TAGS), "tag")
    extra = dict(extra or {})
    model_extra = {m: dict(v) for m, v in (model_extra or {}).items()}
    stage_extra = {t: dict(v) for t, v in (stage_extra or {}).items()}
    # `<tag>:` sections of an overrides file (parse_overrides puts them beside the models')
    # apply to this grid's runs of that tag; another grid's (cpu_demo.yaml's `pretrained:`
    # in the modern grid) are left out
    for tag in SECTION_TAGS:
        section = model_extra.pop(tag, None)
        if section is not None and tag in GRID_SECTIONS.get(grid, ()):
            stage_extra[tag] = {**section, **stage_extra.get(tag, {})}
    unknown = set(model_extra) - set(MODELS)
    if unknown:
        raise ValueError(f"per-model overrides for unknown model(s) {sorted(unknown)}")
    if stage_extra and grid not in GRID_SECTIONS:
        raise ValueError(f"per-stage overrides ({sorted(stage_extra)}) apply to the "
                         f"{' and '.join(GRID_SECTIONS)} grids, not to {grid}")
    unknown = set(stage_extra) - set(SECTION_TAGS)
    if unknown:
        raise ValueError(f"per-stage overrides for unknown stage(s) {sorted(unknown)}; "
                         f"stages: {', '.join(SECTION_TAGS)}")
    stage_extra = {t: v for t, v in stage_extra.items() if t in GRID_SECTIONS.get(grid, ())}
    every = [*extra.items(), *(kv for v in model_extra.values() for kv in v.items()),
             *(kv for v in stage_extra.values() for kv in v.items())]
    reserved = {"output_folder", "init_from_run"} & {key for key, _ in every}
    if reserved:
        raise ValueError(f"{sorted(reserved)} are set by the grid, not by extra overrides")
    if "=" in str(runs_root):
        raise ValueError(f"runs root {runs_root}: no '=' please (SpeechBrain splits its "
                         "--key=value arguments at every '=')")
    for key, value in every:
        if "=" in f"{key}{format_value(value)}":
            raise ValueError(f"override {key}={value}: SpeechBrain cannot take '=' in a key "
                             "or value")
    if best_lr and grid not in ("steps", "modern"):
        raise ValueError(f"best_lr applies to the steps and modern grids, not to {grid}")
    if n_seeds is not None and not (isinstance(n_seeds, int) and n_seeds >= 1):
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    points = ALL_GRIDS[grid](best_lr) if best_lr else ALL_GRIDS[grid]()
    runs = []
    seeds_seen: dict[tuple, list[str]] = {}
    for model, subset, point, overrides, tag in points:
        seed = dict(point).get("seed")
        if n_seeds and seed is not None:
            seen = seeds_seen.setdefault((model, subset, tag, dict(point).get("steps")), [])
            if seed not in seen:
                seen.append(seed)
            if seen.index(seed) >= n_seeds:
                continue
        if want_models and model not in want_models:
            continue
        if want_subsets and subset not in want_subsets:
            continue
        if want_tags and tag not in want_tags:
            continue
        merged = {**COMMON, **overrides}
        if step_scale:
            merged.update(scaled_steps(model, merged, step_scale))
        merged.update(extra)
        merged.update(model_extra.get(model, {}))
        parent = None
        if grid == "modern":
            stage = stage_overrides(tag, model)
            if step_scale and "max_steps" in stage:
                stage["max_steps"] = scaled_steps(model, stage, step_scale)["max_steps"]
            merged.update(stage)
            merged.update(stage_extra.get(tag, {}))
            parent_tag = MODERN_STAGES[tag][1]
            if parent_tag:
                parent = _folder(Path(runs_root), grid, model, subset, point, parent_tag)
                merged["init_from_run"] = str(parent)
        elif tag in stage_extra:  # the demo's wav2vec2 starts
            merged.update(stage_extra[tag])
        folder = _folder(Path(runs_root), grid, model, subset, point, tag)
        experiment = f"ablation_{model}_{subset}" if grid == "ablation" else ""
        runs.append(Run(grid, model, subset, point, merged, folder, tag, experiment, parent))
    return runs


# ---------------------------------------------------------------------------
# experiments beyond the study's cells: any hparams/<name>.yaml (e.g. wavlm_base_plus_tiny_few)
# runs in the LR grids without code changes: the grid reads the file's model_name and subset
# and gives it the grid points of that model family and subset.
EXPERIMENT_GRIDS = ("naive_lr", "detailed_lr")
# families of ours -> the study's model whose grid points, step scaling (num_frozen_steps),
# per-model overrides and GPU class they take: ssl_ecapa is wav2vec2's backbone recipe
GRID_FAMILY = {"ssl_ecapa": "wav2vec2"}


def experiment_cell(name: str) -> tuple[str, str]:
    """(model family in the grids, subset) of hparams/<name>.yaml, from its resolved
    ``model_name`` and ``subset``."""
    from lowres.io.hparams import plain_values

    path = REPO_ROOT / "hparams" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"experiment {name!r}: no hparams file {path}")
    values = plain_values(path)
    model = GRID_FAMILY.get(values.get("model_name"), values.get("model_name"))
    if model not in MODELS or values.get("subset") not in SUBSETS:
        raise ValueError(f"experiment {name}: {path} has model_name "
                         f"{values.get('model_name')!r} and subset {values.get('subset')!r}; "
                         f"the grids know {', '.join((*MODELS, *GRID_FAMILY))} and "
                         f"{', '.join(SUBSETS)}")
    return model, values["subset"]


def expand_experiments(experiments: Iterable[str], grid: str, runs_root: Path | str = "runs",
                       **kwargs) -> list[Run]:
    """The runs of LR grid `grid` for each experiment (hparams/<name>.yaml; comma-separated
    names allowed): the grid's runs of the file's model family and subset (:func:`expand`
    with `kwargs`), with the file as hparams file and RUNS_ROOT/<grid>/<name>/ as folder."""
    if grid not in EXPERIMENT_GRIDS:
        raise ValueError(f"experiments run in the LR grids ({', '.join(EXPERIMENT_GRIDS)}), "
                         f"not in {grid}")
    names = [n.strip() for item in experiments for n in str(item).split(",") if n.strip()]
    want_models = _select(kwargs.pop("models", None), MODELS, "model")
    want_subsets = _select(kwargs.pop("subsets", None), SUBSETS, "subset")
    runs = []
    for name in dict.fromkeys(names):
        model, subset = experiment_cell(name)
        if want_models and model not in want_models or want_subsets and subset not in \
                want_subsets:
            continue  # e.g. a SLURM array of one model's runs
        for run in expand(grid, runs_root, models=[model], subsets=[subset], **kwargs):
            cell_folder = Path(runs_root) / grid / run.cell
            folder = Path(runs_root) / grid / name / run.output_folder.relative_to(cell_folder)
            runs.append(dataclasses.replace(run, experiment=name, output_folder=folder))
    return runs


def model_sections(overrides: Mapping[str, object]) -> tuple[dict, dict[str, dict]]:
    """Split an overrides mapping into (every run, {model or stage: its runs only}).

    A top-level key named after a model (``xvector``, ``ecapa``, ``wav2vec2``), a stage
    of the modern grid (:data:`MODERN_STAGES`) or a start of the demo's wav2vec2
    (:data:`DEMO_STARTS`) whose value is a mapping holds that model's
    or stage's overrides; every other key applies to every run::

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


def scaled_steps(model: str, overrides: Mapping[str, object], scale: float) -> dict:
    """The step counts of one run multiplied by `scale` (at least 1 step each)."""
    if not scale > 0:
        raise ValueError(f"step_scale must be positive, got {scale}")

    def shrink(n) -> int:
        return max(1, round(int(n) * scale))

    out = {"max_steps": shrink(overrides.get("max_steps", DEFAULT_MAX_STEPS))}
    if model == "wav2vec2":
        out["num_frozen_steps"] = shrink(overrides.get("num_frozen_steps",
                                                       DEFAULT_NUM_FROZEN_STEPS))
    if overrides.get("lr_schedule") == "one_cycle":
        out["one_cycle_half_steps"] = shrink(ONE_CYCLE_HALF_STEPS)
    return out


_CELL = re.compile(rf"^({'|'.join(MODELS)})_({'|'.join(SUBSETS)})$")
_PART = re.compile(r"(lr|steps|seed)([^_]+)")


def parse_run_path(runs_root: Path | str, output_folder: Path | str) -> dict:
    """Read the grid point back from a run folder below `runs_root`.

    Returns a dict with grid, model, subset, tag (ablation variant or None) and the
    encoded lr / max_steps / seed (None when the folder does not encode them).
    Folders outside the grid layout give grid=None and whatever could be recognised.
    """
    rel = Path(output_folder).resolve().relative_to(Path(runs_root).resolve())
    parts = rel.parts
    info = {"grid": None, "model": None, "subset": None, "tag": None,
            "lr": None, "max_steps": None, "seed": None}
    cell_at = next((i for i, p in enumerate(parts) if _CELL.match(p)), None)
    if cell_at is None:
        return info
    info["model"], info["subset"] = _CELL.match(parts[cell_at]).groups()
    if cell_at > 0 and parts[cell_at - 1] in ALL_GRIDS:
        info["grid"] = parts[cell_at - 1]
    elif cell_at == 0 and Path(runs_root).resolve().name in ALL_GRIDS:  # root = a grid's folder
        info["grid"] = Path(runs_root).resolve().name
    rest = parts[cell_at + 1:]
    if len(rest) == 2 and (rest[0] in ABLATION_VARIANTS or rest[0] in SECTION_TAGS):
        info["tag"] = rest[0]
    if rest:
        for key, value in _PART.findall(rest[-1]):
            if key == "lr":
                info["lr"] = float(value)
            elif key == "steps":
                info["max_steps"] = int(value)
            else:
                info["seed"] = int(value)
    return info
