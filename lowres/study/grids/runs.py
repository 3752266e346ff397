"""A grid expanded into its runs: one train.py command and run folder each, and the grid
point read back from a run folder.

:func:`expand` gives a grid's runs (:mod:`lowres.study.grids.definitions`) in a fixed order,
the SLURM array index order, with the overrides of the command line laid over each run's;
:func:`expand_experiments` the same for any hparams/<name>.yaml in the LR grids.

Run folders encode the grid point like hparams/shared/base.yaml's default folder:
``RUNS_ROOT/<grid>/<model>_<subset>/lr<lr>[_steps<max_steps>_seed<seed>]``
and, for the ablation, ``RUNS_ROOT/ablation/wav2vec2_<subset>/<tag>/seed<seed>``
(tags as in the study's commands); for the modern grid (not the study's)
``RUNS_ROOT/modern/<model>_<subset>/<stage>/lr<lr>_seed<seed>``, for the adaptation grids
``RUNS_ROOT/<grid>/wav2vec2_<subset>/<method>/lr<lr>_seed<seed>``.  :func:`parse_run_path`
reads them back.  No ``=`` anywhere: SpeechBrain splits ``--key=value`` arguments at every ``=``.
Every override must name a key of its run's hparams file or a SpeechBrain run option
(``device``, ...): a typo is refused when the grid is expanded, not by each of its runs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lowres.io.hparams import check_keys, hparams_keys
from lowres.io.run_folder import is_finished
from lowres.study.grids.definitions import (
    ABLATION_VARIANTS,
    ADAPTATION_GRIDS,
    ALL_GRIDS,
    COMMON,
    DEFAULT_MAX_STEPS,
    DEFAULT_NUM_FROZEN_STEPS,
    DEMO_RUNS,
    DEMO_STARTS,
    EXPERIMENT_GRIDS,
    GRID_FAMILY,
    GRID_SECTIONS,
    MODELS,
    MODERN_STAGES,
    ONE_CYCLE_HALF_STEPS,
    REPO_ROOT,
    SECTION_TAGS,
    SUBSETS,
    format_value,
    stage_overrides,
)

__all__ = ["Run", "expand", "expand_experiments", "experiment_cell", "parse_run_path",
           "scaled_steps"]

TRAIN_SCRIPT = "recipes/VoxCeleb/train.py"  # $LOWRES_TRAIN_SCRIPT replaces it (tests, forks)


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

    def argv(self, python: str | None = None) -> list[str]:
        """The train.py command, to be run from the repository root, with ``python`` (default:
        this interpreter, whose environment has lowres's packages; a bare ``python`` may be
        another)."""
        script = os.environ.get("LOWRES_TRAIN_SCRIPT") or TRAIN_SCRIPT
        args = [python or sys.executable, script, self.hparams_file]
        args += [f"--{key}={format_value(value)}" for key, value in self.overrides.items()]
        args.append(f"--output_folder={self.output_folder}")
        return args

    def command(self, python: str | None = None) -> str:
        return shlex.join(self.argv(python))

    def finished(self) -> bool:
        return is_finished(self.output_folder)


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
    experiment: str = "",
) -> list[Run]:
    """Expand `grid` into its runs, in a fixed order (the SLURM array index order).

    `models`, `subsets`, `tags` (ablation variants) restrict the grid (comma-separated
    strings allowed; "all" = no restriction).  `extra` overrides are applied to every
    run (they replace a grid value of the same key, e.g. a CPU-sized max_steps) but do
    not change the run folders, which always encode the grid point.  `best_lr` maps
    (model, subset) to the lr the `steps` grid uses instead of the study's best lr (e.g. the
    winner of our own LR grids, lowres.study.results.tables.best_lrs); the folders then say
    so.
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
    demo grid, `stage_extra` holds each wav2vec2 start's (:data:`DEMO_STARTS`). In the
    adaptation grids (:data:`ADAPTATION_GRIDS`) the grid point's values (its method's, its
    lr entry, its seed) come after `extra` and `model_extra`, beneath the start's section
    (adaptation_demo's ``pretrained``) and then the method's in `stage_extra`.
    `n_seeds` keeps the first N seeds of each cell (grids whose points have a seed).
    `experiment` names the hparams/<experiment>.yaml that replaces each run's model x subset
    file (:func:`expand_experiments`, which chooses the model and subset to match it).
    Every override must name a key of the run's hparams file or a SpeechBrain run option.
    """
    if grid not in ALL_GRIDS:
        raise ValueError(f"unknown grid {grid!r}; choose from {', '.join(ALL_GRIDS)}")
    chosen = (_select(models, MODELS, "model"), _select(subsets, SUBSETS, "subset"),
              _select(tags, (*ABLATION_VARIANTS, *SECTION_TAGS), "tag"))
    layers = _override_layers(grid, extra, model_extra, stage_extra, step_scale)
    _check_names(runs_root, layers)
    if best_lr and grid not in ("steps", "modern"):
        raise ValueError(f"best_lr applies to the steps and modern grids, not to {grid}")
    if n_seeds is not None and not (isinstance(n_seeds, int) and n_seeds >= 1):
        raise ValueError(f"n_seeds must be a positive integer, got {n_seeds!r}")
    points = ALL_GRIDS[grid](best_lr) if best_lr else ALL_GRIDS[grid]()
    runs = [_run(grid, Path(runs_root), model, subset, point, overrides, tag, layers)
            for model, subset, point, overrides, tag in _first_seeds(points, n_seeds)
            if all(not want or value in want
                   for value, want in zip((model, subset, tag), chosen, strict=True))]
    if experiment:
        runs = [dataclasses.replace(run, experiment=experiment) for run in runs]
    return _checked(runs)


def _checked(runs: list[Run]) -> list[Run]:
    """``runs``, once every override names a key of its run's hparams file or a SpeechBrain
    run option (HparamsError, a ValueError, suggesting the closest keys)."""
    for run in runs:
        known = _hparams_keys(run.hparams_file)
        unknown = [key for key in run.overrides if key not in known]
        if unknown:
            check_keys(unknown, known | _run_options(), run.hparams_file)
    return runs


@functools.cache
def _hparams_keys(hparams_file: str) -> frozenset[str]:
    return frozenset(hparams_keys(REPO_ROOT / hparams_file))


@functools.cache
def _run_options() -> frozenset[str]:
    """SpeechBrain's run options (``--device`` ...), which train.py takes beside the hparams;
    imported only for an override that is no hparam, as speechbrain imports torch."""
    from speechbrain.utils.run_opts import RunOptions

    return frozenset(f.name for f in dataclasses.fields(RunOptions))


@dataclass(frozen=True)
class _OverrideLayers:
    """The caller's overrides of one grid, laid over each run's grid values in this order
    (see :func:`expand`)."""

    every: dict  # `extra`
    per_model: dict[str, dict]
    per_stage: dict[str, dict]  # only the tags of this grid's sections
    step_scale: float | None

    def items(self) -> list[tuple[str, object]]:
        """Every (key, value) of every layer."""
        return [*self.every.items(),
                *(kv for layer in (*self.per_model.values(), *self.per_stage.values())
                  for kv in layer.items())]


def _override_layers(grid: str, extra: Mapping[str, object] | None,
                     model_extra: Mapping[str, Mapping[str, object]] | None,
                     stage_extra: Mapping[str, Mapping[str, object]] | None,
                     step_scale: float | None) -> _OverrideLayers:
    """The overrides as layers; `<tag>:` sections of an overrides file (parse_overrides puts
    them beside the models') join this grid's stage overrides, another grid's
    (cpu_demo.yaml's `pretrained:` in the modern grid) are left out."""
    model_extra = {m: dict(v) for m, v in (model_extra or {}).items()}
    stage_extra = {t: dict(v) for t, v in (stage_extra or {}).items()}
    sections = GRID_SECTIONS.get(grid, ())
    for tag in SECTION_TAGS:
        section = model_extra.pop(tag, None)
        if section is not None and tag in sections:
            stage_extra[tag] = {**section, **stage_extra.get(tag, {})}
    unknown = set(model_extra) - set(MODELS)
    if unknown:
        raise ValueError(f"per-model overrides for unknown model(s) {sorted(unknown)}")
    if stage_extra and grid not in GRID_SECTIONS:
        raise ValueError(f"per-stage overrides ({sorted(stage_extra)}) apply to the "
                         f"{', '.join(GRID_SECTIONS)} grids, not to {grid}")
    unknown = set(stage_extra) - set(SECTION_TAGS)
    if unknown:
        raise ValueError(f"per-stage overrides for unknown stage(s) {sorted(unknown)}; "
                         f"stages: {', '.join(SECTION_TAGS)}")
    per_stage = {t: v for t, v in stage_extra.items() if t in sections}
    return _OverrideLayers(dict(extra or {}), model_extra, per_stage, step_scale)


def _check_names(runs_root: Path | str, layers: _OverrideLayers) -> None:
    """Refuse what the grid sets itself, and any '=' (SpeechBrain splits its --key=value
    arguments at every '=')."""
    reserved = {"output_folder", "init_from_run"} & {key for key, _ in layers.items()}
    if reserved:
        raise ValueError(f"{sorted(reserved)} are set by the grid, not by extra overrides")
    if "=" in str(runs_root):
        raise ValueError(f"runs root {runs_root}: no '=' please (SpeechBrain splits its "
                         "--key=value arguments at every '=')")
    for key, value in layers.items():
        if "=" in f"{key}{format_value(value)}":
            raise ValueError(f"override {key}={value}: SpeechBrain cannot take '=' in a key "
                             "or value")


def _first_seeds(points: Iterable[tuple], n_seeds: int | None) -> Iterator[tuple]:
    """The grid points, less those past the first `n_seeds` seeds of their cell (a cell:
    model, subset, tag and max_steps); all of them without `n_seeds`."""
    seeds_seen: dict[tuple, list[str]] = {}
    for model, subset, point, overrides, tag in points:
        seed = dict(point).get("seed")
        if n_seeds and seed is not None:
            seen = seeds_seen.setdefault((model, subset, tag, dict(point).get("steps")), [])
            if seed not in seen:
                seen.append(seed)
            if seen.index(seed) >= n_seeds:
                continue
        yield model, subset, point, overrides, tag


def _run(grid: str, runs_root: Path, model: str, subset: str, point, overrides: dict,
         tag: str | None, layers: _OverrideLayers) -> Run:
    """One grid point's run: its grid values with the override layers laid over them (in
    the adaptation grids, the grid values over the common and per-model layers)."""
    adaptation = ADAPTATION_GRIDS.get(grid)
    merged = {**COMMON, **({} if adaptation else overrides)}
    if layers.step_scale:
        merged.update(scaled_steps(model, merged, layers.step_scale))
    merged.update(layers.every)
    merged.update(layers.per_model.get(model, {}))
    if grid == "modern":
        merged.update(_stage_values(tag, model, layers.step_scale))
    if adaptation:
        merged.update(layers.per_stage.get(adaptation.start, {}))
        merged.update(overrides)
    merged.update(layers.per_stage.get(tag, {}))  # a modern stage's, demo start's, method's
    parent_tag = MODERN_STAGES[tag][1] if grid == "modern" else None
    parent = _folder(runs_root, grid, model, subset, point, parent_tag) if parent_tag else None
    if parent:
        merged["init_from_run"] = str(parent)
    folder = _folder(runs_root, grid, model, subset, point, tag)
    experiment = f"ablation_{model}_{subset}" if grid == "ablation" else ""
    return Run(grid, model, subset, point, merged, folder, tag, experiment, parent)


def _stage_values(tag: str, model: str, step_scale: float | None) -> dict:
    """A modern stage's values for `model` (:func:`stage_overrides`), max_steps scaled."""
    stage = stage_overrides(tag, model)
    if step_scale and "max_steps" in stage:
        stage["max_steps"] = scaled_steps(model, stage, step_scale)["max_steps"]
    return stage


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
        for run in expand(grid, runs_root, models=[model], subsets=[subset], experiment=name,
                          **kwargs):
            cell_folder = Path(runs_root) / grid / run.cell
            folder = Path(runs_root) / grid / name / run.output_folder.relative_to(cell_folder)
            runs.append(dataclasses.replace(run, output_folder=folder))
    return runs


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


def _demo_layout(rest: tuple[str, ...]) -> bool:
    """``trained`` or ``untrained``, for wav2vec2 below its start: a run of the demo."""
    if len(rest) == 1:
        return rest[0] in DEMO_RUNS
    return len(rest) == 2 and rest[0] in DEMO_STARTS and rest[1] in DEMO_RUNS


def parse_run_path(runs_root: Path | str, output_folder: Path | str) -> dict:
    """Read the grid point back from a run folder below `runs_root`.

    Returns a dict with grid, model, subset, tag (ablation variant or None) and the
    encoded lr / max_steps / seed (None when the folder does not encode them).
    Folders outside the grid layout give grid=None and whatever could be recognised.
    The grid is the folder above the run's ``<model>_<subset>``; for the demo's runs, their
    own layout (:data:`DEMO_RUNS`) wherever they lie; else the name of `runs_root` itself
    (``python -m lowres.results runs/steps``).
    """
    rel = Path(output_folder).resolve().relative_to(Path(runs_root).resolve())
    parts = rel.parts
    info = {"grid": None, "model": None, "subset": None, "tag": None,
            "lr": None, "max_steps": None, "seed": None}
    cell_at = next((i for i, p in enumerate(parts) if _CELL.match(p)), None)
    if cell_at is None:
        return info
    info["model"], info["subset"] = _CELL.match(parts[cell_at]).groups()
    rest = parts[cell_at + 1:]
    if cell_at > 0 and parts[cell_at - 1] in ALL_GRIDS:
        info["grid"] = parts[cell_at - 1]
    elif _demo_layout(rest):
        info["grid"] = "demo"
    elif cell_at == 0 and Path(runs_root).resolve().name in ALL_GRIDS:  # root = a grid's folder
        info["grid"] = Path(runs_root).resolve().name
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
