"""Run the study's grids: list, run locally, run one SLURM array task, print sbatch lines.

    python -m lowres.grid list GRID [--model M] [--subset S] [--set key=value ...]
    python -m lowres.grid run GRID [--jobs N] [...]      # local runner, skips finished runs
    python -m lowres.grid task GRID --index I [...]      # one run (what slurm/*.sbatch calls)
    python -m lowres.grid sbatch GRID [--parallel P] [--submit] [...]

GRID is one of naive_lr, detailed_lr, steps, ablation (lowres/study/grids/definitions.py),
modern (beyond the study: the recipe + augmentation, averaging, large margin, AS-norm),
adaptation (beyond the study: wav2vec2 fine-tuned whole, frozen, with LoRA or adapters,
under MHFA or the mean), demo (`make demo`: each model on the three tiny subsets,
CPU-sized; not a grid of the study) or adaptation_demo (the adaptation grid at the demo's
sizes, from its pre-trained wav2vec2; local only).  The commands are run from the
repository root; a relative --runs_root is taken relative to the current directory.  Extra
overrides (``--set key=value``, ``--overrides file.yaml`` with flat ``key: value`` lines)
are appended to every command and replace a grid value of the same key (in the adaptation
grids, the values of a method win); run folders keep encoding the grid point.  Overrides
for one model only: a ``MODEL:`` mapping in the file or ``--set MODEL.key=value``; for one
stage of the modern grid (or method of the adaptation grids) only: a ``STAGE:`` mapping or
``--set STAGE.key=value``.  A run is finished when OUT/eval/best/results.json exists; a
run that starts from another (the modern grid's large-margin stage) waits for it locally,
and under SLURM runs in a second array submitted after the first (``sbatch`` prints both).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from lowres.io.run_folder import is_finished
from lowres.study.grids.definitions import (
    ALL_GRIDS,
    GPU_CLASS,
    LOCAL_GRIDS,
    MODELS,
    REPO_ROOT,
    SECTION_TAGS,
    format_value,
    model_sections,
)
from lowres.study.grids.runs import Run, expand, expand_experiments

# The study's hydra.launcher.array_parallelism per grid (docs/study.md, 'Launchers');
# steps ran one at a time.
DEFAULT_PARALLEL = {"naive_lr": 3, "detailed_lr": 3, "steps": 1, "ablation": 8,
                    "modern": 3, "adaptation": 3}  # modern, adaptation: not the study's
DEFAULT_PARALLEL_MODEL = {("naive_lr", "wav2vec2"): 6}


def _override_text(value) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return format_value(value)


def parse_overrides(sets: list[str] | None, files: list[str] | None
                    ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Merge ``--overrides FILE`` (in order) and then ``--set key=value`` into
    (overrides of every run, {model or tag: overrides of its runs}).

    In a file, a top-level ``<model>:`` mapping (xvector, ecapa, wav2vec2) or ``<stage>:``
    mapping (a stage of the modern grid, a start of the demo's wav2vec2, a method of the
    adaptation grids) holds the overrides of that model's or tag's runs
    (lowres.study.grids.definitions.model_sections); on the command line
    ``--set <model>.key=value`` / ``--set <stage>.key=value`` does the same.
    """
    extra: dict[str, str] = {}
    per_model: dict[str, dict[str, str]] = {}
    for file in files or []:
        data = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(data, dict):
            raise SystemExit(f"--overrides {file}: expected 'key: value' lines, got {type(data)}")
        common, models = model_sections(data)
        for key, value in common.items():
            extra[str(key)] = _override_text(value)
        for model, values in models.items():
            for key, value in values.items():
                per_model.setdefault(model, {})[str(key)] = _override_text(value)
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        key = key.strip().lstrip("-")
        model, dot, model_key = key.partition(".")
        if dot and (model in MODELS or model in SECTION_TAGS):
            per_model.setdefault(model, {})[model_key] = value
        else:
            extra[key] = value
    return extra, per_model


def runs_root_arg(value: str) -> Path:
    """Absolute runs root; shown relative to the repository root when inside it."""
    root = Path(value).expanduser().resolve()
    try:
        return root.relative_to(REPO_ROOT)
    except ValueError:
        return root


def best_lr_arg(args) -> dict | None:
    """The steps grid's lr per cell from our own LR-grid runs (--best_lr_from)."""
    if not args.best_lr_from:
        return None
    if args.grid not in ("steps", "modern"):
        raise SystemExit("--best_lr_from applies to the steps and modern grids only")
    from lowres.study.results.frame import collect
    from lowres.study.results.tables import best_lrs

    chosen = best_lrs(collect(args.best_lr_from), args.best_lr_test_set)
    if not args.quiet:
        for (model, subset), lr in sorted(chosen.items()):
            print(f"# best lr {model}_{subset}: {format_value(lr)} (from {args.best_lr_from}, "
                  f"EER on {args.best_lr_test_set})", file=sys.stderr)
        if not chosen:
            print(f"# no finished LR-grid runs in {args.best_lr_from}: the study's lrs apply",
                  file=sys.stderr)
    return chosen


def select(args) -> list[Run]:
    extra, model_extra = parse_overrides(args.set, args.overrides)
    best_lr = best_lr_arg(args)
    # --experiment NAME: the grid's runs of hparams/NAME.yaml's model family and subset
    grid_expand = functools.partial(expand_experiments, args.experiment) \
        if args.experiment else expand
    try:
        return grid_expand(args.grid, runs_root_arg(args.runs_root), models=args.model,
                      subsets=args.subset, tags=args.tag, extra=extra, best_lr=best_lr,
                      step_scale=args.step_scale, model_extra=model_extra,
                      n_seeds=args.n_seeds)
    except ValueError as err:  # a grid, model, subset or override the grids do not know
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _abs(path: Path) -> Path:
    return path if path.is_absolute() else REPO_ROOT / path


def finished(run: Run) -> bool:
    return is_finished(_abs(run.output_folder))


# ---------------------------------------------------------------------------
def cmd_list(args) -> int:
    runs = select(args)
    for run in runs:
        print(run.command(args.python))
    done = sum(finished(run) for run in runs)
    print(f"# {len(runs)} runs ({done} finished); run from {REPO_ROOT}")
    return 0


def _child_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    return env


def cmd_run(args) -> int:
    runs = select(args)
    todo = [run for run in runs if not finished(run)]
    print(f"{args.grid}: {len(runs)} runs, {len(runs) - len(todo)} finished (skipped), "
          f"{len(todo)} to run, {args.jobs} at a time", flush=True)
    if args.dry_run:
        for run in todo:
            print(run.command())
        return 0
    env = _child_env(args.jobs)
    lock = threading.Lock()
    failed: list[Run] = []
    counter = iter(range(1, len(todo) + 1))
    ended = iter(range(1, len(todo) + 1))

    def one(run: Run) -> None:
        folder = _abs(run.output_folder)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "grid_run.log"
        with lock:
            k = next(counter)
            print(f"[{k}/{len(todo)}] start {run.output_folder}", flush=True)
        start = time.monotonic()
        with open(log, "a") as out:
            out.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} {run.command()}\n")
            out.flush()
            rc = subprocess.call(run.argv(), cwd=REPO_ROOT, env=env,
                                 stdout=out, stderr=subprocess.STDOUT)
        took = time.monotonic() - start
        ok = rc == 0 and finished(run)
        with lock:
            n_ended = next(ended)
            if ok:
                print(f"[{k}/{len(todo)}] done in {took:.0f} s ({n_ended}/{len(todo)} ended): "
                      f"{run.output_folder}", flush=True)
            else:
                failed.append(run)
                why = f"exit {rc}" if rc else "no eval/best/results.json"
                print(f"[{k}/{len(todo)}] FAILED ({why}) after {took:.0f} s ({n_ended}/"
                      f"{len(todo)} ended): {run.output_folder} (log: {log})", flush=True)

    # a run whose parent (init_from_run) is to run as well goes in a later wave
    waves: list[list[Run]] = []
    waiting = todo
    while waiting:
        pending = {_abs(run.output_folder) for run in waiting}
        ready = [r for r in waiting if r.parent is None or _abs(r.parent) not in pending]
        waiting = [r for r in waiting if r not in ready]
        waves.append(ready)
    for wave in waves:
        broken = {_abs(run.output_folder) for run in failed}
        runnable = []
        for run in wave:
            if run.parent is not None and _abs(run.parent) in broken:
                failed.append(run)
                print(f"[-/{len(todo)}] SKIPPED (its parent {run.parent} failed): "
                      f"{run.output_folder}", flush=True)
            else:
                runnable.append(run)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, runnable))
    print(f"{args.grid}: {len(todo) - len(failed)} of {len(todo)} runs finished now, "
          f"{len(failed)} failed", flush=True)
    return 1 if failed else 0


def gpu_memory_gib() -> float | None:
    """Memory of the first visible GPU (nvidia-smi), None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode or not lines:
        return None
    try:
        return float(lines[0]) / 1024  # MiB
    except ValueError:
        return None


def check_gpu_class(run: Run) -> None:
    """Warn when the GPU is smaller than the class the study used for this model."""
    need = int(GPU_CLASS[run.model].removesuffix("GB"))
    have = gpu_memory_gib()
    if have is not None and have < 0.9 * need:
        print(f"warning: {run.model} ran on a {need} GB GPU in the study, this one has "
              f"{have:.0f} GiB (ask for it with $LOWRES_SBATCH_{GPU_CLASS[run.model]}, see "
              "slurm/README.md); it may run out of memory", file=sys.stderr, flush=True)


def cmd_task(args) -> int:
    runs = select(args)
    if not 0 <= args.index < len(runs):
        raise SystemExit(f"index {args.index} out of range: this selection of {args.grid} has "
                         f"{len(runs)} runs (array 0-{len(runs) - 1})")
    run = runs[args.index]
    argv = run.argv()
    if args.launch:  # e.g. torchrun ...: it starts train.py itself (slurm/task.sh)
        argv = [*shlex.split(args.launch), *argv[1:]]
    if args.print:
        print(shlex.join(argv))
        return 0
    if finished(run):
        print(f"already finished, skipping: {run.output_folder}", flush=True)
        return 0
    if run.parent is not None and not is_finished(_abs(run.parent)):
        raise SystemExit(f"{run.output_folder} starts from {run.parent}, which is not finished "
                         f"(no eval/best/results.json): run that first (`python -m lowres.grid "
                         f"sbatch {args.grid}` submits it in an earlier array)")
    check_gpu_class(run)
    print(f"running {args.grid}[{args.index}]: {shlex.join(argv)}", flush=True)
    os.chdir(REPO_ROOT)
    os.execvp(argv[0], argv)  # train.py (or the launcher) itself receives SLURM's signals
    return 1  # not reached


def _passthrough(args, tags: list[str] | None = None) -> list[str]:
    out: list[str] = []
    for subset in args.subset or []:
        out += ["--subset", subset]
    for name in args.experiment or []:
        out += ["--experiment", name]
    for tag in (args.tag or []) if tags is None else tags:
        out += ["--tag", tag]
    for file in args.overrides or []:
        out += ["--overrides", str(Path(file).resolve())]
    for item in args.set or []:
        out += ["--set", item]
    out += ["--runs_root", str(_abs(runs_root_arg(args.runs_root)))]
    if args.step_scale:
        out += ["--step_scale", repr(args.step_scale)]
    if args.n_seeds:
        out += ["--n_seeds", str(args.n_seeds)]
    if args.best_lr_from:
        out += ["--best_lr_from", str(Path(args.best_lr_from).resolve()),
                "--best_lr_test_set", args.best_lr_test_set]
    return out


def gpu_args(model: str) -> list[str]:
    """sbatch arguments that ask for the model's GPU class (11GB or 24GB).

    Cluster specific, so taken from LOWRES_SBATCH_11GB / LOWRES_SBATCH_24GB, e.g.
    ``export LOWRES_SBATCH_24GB="--constraint=gpu24gb"`` or ``"--gres=gpu:a5000:1"``.
    """
    gpu_class = GPU_CLASS[model]
    return shlex.split(os.environ.get(f"LOWRES_SBATCH_{gpu_class}", ""))


def _waves(runs: list[Run]) -> list[list[str] | None]:
    """Tags of each array to submit in turn: [None] (one array, every tag) for a grid
    without parents, else the tags without a parent run, then those starting from one."""
    if all(run.parent is None for run in runs):
        return [None]
    first = list(dict.fromkeys(run.tag for run in runs if run.parent is None))
    second = list(dict.fromkeys(run.tag for run in runs if run.parent is not None))
    return [tags for tags in (first, second) if tags]


def cmd_sbatch(args) -> int:
    if args.grid in LOCAL_GRIDS:
        raise SystemExit(f"{args.grid} runs locally only: python -m lowres.grid run {args.grid}")
    runs = select(args)
    script = f"slurm/{args.grid}.sbatch"
    log = REPO_ROOT / "slurm" / "logs" / "%x_%A_%a.log"
    for model in dict.fromkeys(run.model for run in runs):
        mine = [run for run in runs if run.model == model]
        parallel = args.parallel or DEFAULT_PARALLEL_MODEL.get(
            (args.grid, model), DEFAULT_PARALLEL.get(args.grid, 1))
        cls = GPU_CLASS[model]
        previous = None  # job id (submitting) or shell variable (printing) to wait for
        waves = _waves(mine)
        for wave, tags in enumerate(waves):
            n = sum(tags is None or run.tag in tags for run in mine)
            after = [f"--dependency=afterany:{previous}"] if previous else []
            cmd = ["sbatch", *(["--parsable"] if len(waves) > 1 else []), *after,
                   f"--array=0-{n - 1}%{parallel}", f"--chdir={REPO_ROOT}", f"--output={log}",
                   *gpu_args(model), *args.sbatch_arg, script, model,
                   *_passthrough(args, tags)]
            what = f" (stage{'s' if len(tags or []) > 1 else ''} {', '.join(tags)})" if tags else ""
            print(f"# {args.grid} / {model}: {n} runs{what}, GPU class {cls} "
                  f"(sbatch args from $LOWRES_SBATCH_{cls})"
                  + (", after the array above (each run starts from one of its runs)"
                     if previous else ""))
            variable = f"jid_{model}_{wave}"
            line = shlex.join(cmd)
            if after and not args.submit:  # a shell variable: unquoted
                line = line.replace(shlex.quote(after[0]), after[0])
            print(f"{variable}=$({line})" if wave < len(waves) - 1 else line)
            if args.submit:
                out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
                sys.stdout.write(out.stdout)
                sys.stderr.write(out.stderr)
                if out.returncode:
                    return out.returncode
                previous = out.stdout.strip().split(";")[0]
            else:
                previous = f"${variable}"
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lowres.grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)

    def common(p):
        p.add_argument("grid", choices=list(ALL_GRIDS))
        p.add_argument("--model", action="append", help="restrict to model(s): xvector, "
                       "ecapa, wav2vec2 (repeat or comma-separate; 'all' = no restriction)")
        p.add_argument("--subset", action="append", help="restrict to subset(s)")
        p.add_argument("--experiment", action="append", metavar="NAME",
                       help="LR grids: run hparams/NAME.yaml (any experiment file) at the grid "
                       "points of its model_name and subset, in RUNS_ROOT/GRID/NAME/ (repeat or "
                       "comma-separate)")
        p.add_argument("--tag", action="append",
                       help="restrict to ablation variant(s), modern stage(s) or adaptation "
                       "method(s)")
        p.add_argument("--runs_root", default=os.environ.get("LOWRES_RUNS_ROOT", "runs"),
                       help="root of the run folders (default $LOWRES_RUNS_ROOT or ./runs)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="extra train.py override for every run (repeatable); "
                       "MODEL.KEY=VALUE: for that model's runs only")
        p.add_argument("--overrides", action="append", metavar="YAML",
                       help="file of 'key: value' overrides for every run (repeatable); a "
                       "top-level 'MODEL:' mapping holds overrides of that model only")
        p.add_argument("--best_lr_from", metavar="RUNS_ROOT",
                       help="steps and modern grids: take each cell's lr from our own "
                       "naive/detailed LR runs below RUNS_ROOT (lowest EER) instead of the study's")
        p.add_argument("--best_lr_test_set", default="original",
                       help="test set that picks the best lr (default original, as the study; "
                       "'val' = validation EER)")
        p.add_argument("--step_scale", type=float, metavar="F",
                       help="multiply every step count (max_steps, wav2vec2's num_frozen_steps, "
                       "one_cycle's half-cycle) by F, e.g. 0.001 for a CPU demo")
        p.add_argument("--n_seeds", type=int, metavar="N",
                       help="keep the first N seeds of each cell (steps, ablation, modern, "
                       "adaptation grids)")
        p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)

    p = sub.add_parser("list", help="print the train.py command lines and the count")
    common(p)
    p.add_argument("--python", help="interpreter shown in the commands (default: the one "
                   "running this command)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run the grid locally, skipping finished runs")
    common(p)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--dry_run", action="store_true", help="only print what would run")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("task", help="run one run by index (used by slurm/*.sbatch)")
    common(p)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--print", action="store_true", help="print the command, do not run it")
    p.add_argument("--launch", help="command that starts train.py in place of the python, "
                   "e.g. 'python -m torch.distributed.run --nproc_per_node 4' (multi-GPU)")
    p.set_defaults(func=cmd_task)

    p = sub.add_parser("sbatch", help="print (or --submit) the sbatch array command(s)")
    common(p)
    p.add_argument("--parallel", type=int, help="array throttle %%P (default: the study's)")
    p.add_argument("--sbatch_arg", action="append", default=[],
                   help="extra argument for sbatch itself, e.g. --sbatch_arg=--partition=gpu")
    p.add_argument("--submit", action="store_true", help="run the sbatch command(s)")
    p.set_defaults(func=cmd_sbatch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `... list GRID | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
