"""`make demo`: the study end to end at CPU scale on the built-in synthetic corpus.

    python -m lowres.demo [--data_folder data/synthetic_demo] [--channel_strength 0.7]
        [--runs_root runs]
        [--out results/demo] [--overrides hparams/overrides/cpu_demo.yaml] [--set K=V ...]
        [--stages corpus,prepare,wav2vec2,pretrain,untrained,train,results]

Stages (each skips what an earlier run finished, so rerunning continues or only
reprints the table):

1. ``corpus``: the synthetic VoxCeleb-shaped corpus (``python -m prepare.synthetic``,
   preset ``default``: 100 VoxCeleb2-style training speakers, 200 VoxCeleb1-style
   test speakers (40 of them in O), and 200 unlabelled speakers disjoint from both, ~80
   min of speech, for pre-training) in DATA, with session channels at 0.7 of the corpus
   default strength. At full strength the recording channel of a session says more than
   the synthetic voice: a randomly initialised wav2vec2 then learns to recognise sessions
   (same-session EER ~10 %) and stays at chance on the cross-session test trials, as the
   study's random-init ablation does on tiny_many_high; at 0.7 every model learns the
   voices and tiny_many_high still beats tiny_many_low (benchmarks/session_vs_speaker.py
   measures it).
2. ``prepare``: manifests, the three tiny subsets, validation and O/E/H test trials
   (``python -m prepare.voxceleb``) with demo-sized budgets (``--few_speakers_per_gender``,
   ``--val_fraction``) in DATA/manifests_demo.
3. ``wav2vec2``: a small RANDOMLY INITIALISED wav2vec2 (``lowres.models.tiny_wav2vec2``; 2 layers,
   width 128) in DATA/wav2vec2_random_tiny.  It is not facebook/wav2vec2-base: the demo
   needs no network and no GPU.
4. ``pretrain``: the same architecture pre-trained WITHOUT LABELS on DATA/unlabelled
   (``recipes/VoxCeleb/pretrain.py hparams/pretrain/utterance_tiny.yaml``: two halves of a
   crop find each other, lowres.training.utterance_contrastive) in RUNS/pretrain/demo; its
   ``pretrained`` folder is the ``pretrained`` start of the demo's wav2vec2.
5. ``untrained``: each architecture at its initialisation (the recipe's seed, ``max_steps``
   0; for the pre-trained wav2vec2, its pre-training without labels) evaluated like a
   trained run, in RUNS/demo/<model>_tiny_few[/<start>]/untrained.
6. ``train``: ``python -m lowres.grid run demo --jobs N`` (lowres/study/grids/; N runs at once,
   ``--jobs``, by default the CPU count, each with one thread): x-vector, ECAPA-TDNN and
   wav2vec2 from both starts (random init, trained whole; pre-trained, fine-tuned with the
   study's frozen-CNN recipe) on tiny_few, tiny_many_low and tiny_many_high with the
   CPU-sized overrides of
   hparams/overrides/cpu_demo.yaml (the one place for them); train.py evaluates each run
   on the O/E/H trials after training.
7. ``results``: ``python -m lowres.results RUNS/demo --out OUT`` (results.csv,
   results.md, figures), then results.md's demo section as it stands in the file: per
   test set the table (model x subset next to the untrained model) and its checks, the
   study's claims as paired comparisons with Holm's correction
   (lowres.study.results.demo_checks).

Every number printed is read from the run folders (lowres.study.results.frame.collect).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from lowres.io.progress import progress
from lowres.io.run_folder import is_finished, train_log_path, write_record
from lowres.study.grids.definitions import DEMO_RUNS, DEMO_SUBSETS, REPO_ROOT
from lowres.study.grids.runs import expand
from lowres.study.results import report
from lowres.study.results.frame import collect
from lowres.study.results.intervals import ScoreDraws
from lowres.study.results.markdown import demo_section

STAGES = ("corpus", "prepare", "wav2vec2", "pretrain", "untrained", "train", "results")
DEFAULT_OVERRIDES = "hparams/overrides/cpu_demo.yaml"
PRETRAIN_HPARAMS = "hparams/pretrain/utterance_tiny.yaml"  # CPU-sized: its own values
# Seconds each stage took from scratch in `time make demo` on the 2-core machine of the
# README's figures (2 jobs), for the ETA printed before and after each stage, scaled by how
# fast this machine ran the stages finished so far; a stage finished by an earlier run takes
# seconds instead.
STAGE_SECONDS = {"corpus": 119, "prepare": 8, "wav2vec2": 5, "pretrain": 270,
                 "untrained": 52, "train": 903, "results": 3}
# A finished stage times this machine only if it is long enough not to be mostly process
# start-up (reference seconds) and took at least this fraction of its reference time (less:
# an earlier run had done its work).
TIMING_STAGE_MIN_SECONDS = 20
TIMING_SKIPPED_FRACTION = 0.1


def say(text: str) -> None:
    print(text, flush=True)


def stage_header(n: int, name: str, what: str) -> float:
    say(f"\n=== [{n}/{len(STAGES)}] {name}: {what}")
    return time.monotonic()


def measured_speed(finished: dict[str, float]) -> float | None:
    """Seconds this machine took per reference second over the finished stages that timed it
    (``finished``: stage -> seconds), or None before one has: a slow day stretches every
    stage alike, so the README's times alone promise too little."""
    timed = {stage: took for stage, took in finished.items()
             if STAGE_SECONDS[stage] >= TIMING_STAGE_MIN_SECONDS
             and took >= TIMING_SKIPPED_FRACTION * STAGE_SECONDS[stage]}
    if not timed:
        return None
    return sum(timed.values()) / sum(STAGE_SECONDS[stage] for stage in timed)


def seconds_left(todo: list[str], finished: dict[str, float]) -> float:
    """The README's times of the stages ``todo``, scaled by the speed measured so far."""
    return (measured_speed(finished) or 1.0) * sum(STAGE_SECONDS[s] for s in todo)


def eta(todo: list[str], finished: dict[str, float], started: float) -> str:
    """The line printed before and after each stage: time so far, time left, end clock."""
    left = seconds_left(todo, finished)
    end = time.strftime("%H:%M", time.localtime(time.time() + left))
    speed = measured_speed(finished)
    basis = ("the README's 2-core stage times" if speed is None else
             f"the README's 2-core stage times x {speed:.2f}, this machine's pace so far")
    return (f"demo so far {time.monotonic() - started:.0f} s; about {left / 60:.0f} min left, "
            f"~{end} ({basis}; work an earlier run finished is skipped)")


def run_cli(args: list[str]) -> None:
    """Run a CLI of this project with the same interpreter, its output on our terminal."""
    say("$ " + " ".join(str(a) for a in args))
    rc = subprocess.call([sys.executable, *map(str, args)], cwd=REPO_ROOT)
    if rc:
        raise SystemExit(f"demo: {args[1]} failed (exit {rc})")


# ---------------------------------------------------------------------------- stages
def make_corpus(data: Path, preset: str, seed: int, channel_strength: float,
                unlabelled_speakers: int, jobs: int) -> None:
    # resumable: a complete corpus is only checked (its sessions exist), not remade
    run_cli(["-m", "prepare.synthetic", "--out", data, "--preset", preset, "--seed", seed,
             "--channel_strength", channel_strength, "--unlabelled_speakers",
             unlabelled_speakers, "--jobs", jobs])


def prepare(data: Path, manifests: Path, jobs: int, options: dict) -> None:
    args = ["-m", "prepare.voxceleb", "--data_folder", data, "--save_folder", manifests,
            "--jobs", jobs, "--subsets", *DEMO_SUBSETS]
    for key, value in options.items():
        args += [f"--{key}", value]
    run_cli(args)


def write_random_wav2vec2(folder: Path) -> None:
    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

    if not (folder / "config.json").is_file():
        save_tiny_wav2vec2(folder, size="tiny", seed=0)
    say(f"wav2vec2 for the demo: {folder} -- a small RANDOMLY INITIALISED wav2vec2 (2 "
        "transformer layers, width 128), NOT the pre-trained facebook/wav2vec2-base")


def pretrain(data: Path, folder: Path, options: list[str]) -> Path:
    """Pre-train the demo's wav2vec2 on DATA/unlabelled (resumable: a rerun continues the
    run's checkpoint; a finished one is kept) and return its ``pretrained`` folder. The
    device is SpeechBrain's choice, as for the demo's training runs (a GPU if there is one;
    ``--pretrain=--device --pretrain=cpu`` says otherwise)."""
    model = folder / "pretrained"
    if (model / "config.json").is_file():
        say(f"pre-trained wav2vec2 already there: {model}")
        return model
    run_cli(["recipes/VoxCeleb/pretrain.py", PRETRAIN_HPARAMS, "--train_audio",
             data / "unlabelled", "--output_folder", folder, *options])
    return model


def _yaml_value(text: str):
    return yaml.safe_load(text) if isinstance(text, str) else text


def untrained_folder(runs_root: Path, model: str, tag: str | None = None) -> Path:
    return runs_root / "demo" / f"{model}_tiny_few" / (tag or "") / DEMO_RUNS[1]


def evaluate_untrained(model: str, out: Path, overrides: dict) -> dict:
    """Evaluate ``model`` at its random initialisation like a trained run.

    The embedder is built from hparams/<model>_tiny_few.yaml with the demo's overrides
    (same seed as the trained run, so the same initial weights), saved as a step-0
    checkpoint whose val_eer is its validation EER, and evaluated by lowres.scoring.evaluation
    (``OUT/eval/best/results.json``).  ``max_steps`` 0 in hyperparams.yaml marks it.
    """
    import torch

    from lowres.io.hparams import resolve_hparams
    from lowres.io.lists import read_manifest, read_trials
    from lowres.scoring.batch_embedding import extract_embeddings
    from lowres.scoring.evaluation import evaluate_run
    from lowres.scoring.metrics import eer
    from lowres.scoring.trials import score_trials

    hparams_file = REPO_ROOT / "hparams" / f"{model}_tiny_few.yaml"
    values = {k: _yaml_value(v) for k, v in overrides.items()}
    values.update(output_folder=str(out), max_steps=0)
    train = read_manifest(Path(values["manifest_folder"]) / "tiny_few" / "train.csv")
    values["n_speakers"] = train.spk_id.nunique()
    keep = {"evaluate_after_training", "device"}  # train.py options, not needed here
    values = {k: v for k, v in values.items() if k not in keep}
    resolved = resolve_hparams(hparams_file, values)
    hparams = resolved.build()
    write_record(out, resolved.yaml,
                 f"by lowres.study.demo: {model} at its random initialisation (no training), "
                 f"from {hparams_file} with overrides {values}")
    embedder = hparams["embedder"]
    valid = read_manifest(hparams["valid_csv"])
    ids = valid.ID.tolist()
    emb = extract_embeddings(embedder, valid.wav.tolist(),
                             progress=f"{model} untrained: validation")
    scores, labels = score_trials(dict(zip(ids, emb, strict=True)),
                                  read_trials(hparams["val_trials"]))
    val_eer = eer(scores, labels).eer
    hparams["checkpointer"].save_checkpoint(meta={"val_eer": float(val_eer), "step": 0})
    with torch.no_grad():
        return evaluate_run(hparams, checkpoint="best", test_sets=hparams["test_sets"],
                            device="cpu")


class TrainProgress:
    """A progress bar over every optimiser step of the demo grid, read from train_log.txt."""

    _STEP = re.compile(r"step: (\d+)")

    def __init__(self, runs):
        self.runs = [(run, int(_yaml_value(run.overrides["max_steps"]))) for run in runs]
        self.bar = progress(total=sum(n for _, n in self.runs), unit="step", file=sys.stdout,
                            desc="demo training (all runs)")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _done_steps(self) -> int:
        total = 0
        for run, max_steps in self.runs:
            folder = _abs(run.output_folder)
            if is_finished(folder):
                total += max_steps
                continue
            log = train_log_path(folder)
            if log.is_file():
                steps = [int(s) for s in self._STEP.findall(log.read_text(errors="replace"))]
                total += min(max(steps, default=0), max_steps)
        return total

    def _advance(self) -> None:
        # update(), not refresh(): the bar prints at its own interval (every 30 s in a log)
        self.bar.update(max(self._done_steps() - self.bar.n, 0))

    def _loop(self) -> None:
        while not self.stop.wait(5):
            self._advance()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._advance()
        self.bar.close()


def _abs(path: Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def train(runs_root: Path, overrides_files: list[str], sets: list[str], jobs: int) -> None:
    from lowres.study.grids.runner import parse_overrides

    # two runs at once with one thread each use two cores better than one run with two
    # (a batch of 32 one-second crops is too small to split well)
    grid_args = ["-m", "lowres.grid", "run", "demo", "--runs_root", runs_root,
                 "--jobs", jobs]
    for file in overrides_files:
        grid_args += ["--overrides", file]
    for item in sets:
        grid_args += ["--set", item]
    extra, per_model = parse_overrides(sets, overrides_files)
    runs = expand("demo", runs_root, extra=extra, model_extra=per_model)
    say(f"{len(runs)} runs, {sum(is_finished(_abs(r.output_folder)) for r in runs)} already "
        f"finished; each run's log: {runs_root}/demo/<model>_<subset>[/<start>]/trained/"
        "grid_run.log")
    if all("max_steps" in run.overrides for run in runs):
        with TrainProgress(runs):
            run_cli(grid_args)
    else:
        run_cli(grid_args)


# ---------------------------------------------------------------------------- table
def results(runs_root: Path, out: Path) -> None:
    """results.csv, results.md and the figures (lowres.results), then results.md's demo
    section: the table and its checks per test set, so the terminal shows what the file
    does."""
    demo_root = _abs(runs_root) / "demo"
    report.main([str(demo_root), "--out", str(out)])
    # the speaker draws lowres.results has just cached: the checks are not computed again
    draws = ScoreDraws(cache=out / "intervals")
    say("\n" + "\n".join(demo_section(collect(demo_root), demo_root, draws)))
    say(f"Results: {out}/results.md (tables), {out}/results.csv (every run), "
        f"{out}/demo.png and demo.pdf (figure); run folders in {demo_root}")


# ---------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lowres.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_folder", type=Path, default=Path("data/synthetic_demo"),
                   help="synthetic corpus (default data/synthetic_demo)")
    p.add_argument("--manifest_folder", type=Path,
                   help="manifests (default DATA_FOLDER/manifests_demo)")
    p.add_argument("--wav2vec2_folder", type=Path,
                   help="random wav2vec2 (default DATA_FOLDER/../wav2vec2_random_tiny)")
    p.add_argument("--unlabelled_speakers", type=int, default=200,
                   help="unlabelled speakers of the corpus, for pre-training (default 200)")
    p.add_argument("--pretrain", action="append", default=[], metavar="--KEY VALUE",
                   help=f"an option of pretrain.py after {PRETRAIN_HPARAMS}, e.g. "
                   "--pretrain=--max_steps --pretrain=300")
    p.add_argument("--preset", default="default", help="prepare.synthetic preset")
    p.add_argument("--corpus_seed", type=int, default=0)
    p.add_argument("--channel_strength", type=float, default=0.7,
                   help="prepare.synthetic --channel_strength (default 0.7; see stage 1)")
    p.add_argument("--runs_root", type=Path, default=Path("runs"),
                   help="run folders go to RUNS_ROOT/demo (default runs)")
    p.add_argument("--out", type=Path, default=Path("results/demo"),
                   help="table and figures (default results/demo)")
    p.add_argument("--overrides", action="append",
                   help=f"CPU-sized train.py overrides (default {DEFAULT_OVERRIDES})")
    p.add_argument("--set", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                   help="one more override (after the file), as lowres.grid --set")
    # Demo budgets (prepare.voxceleb options) for the default preset's 100 training
    # speakers: tiny_few = 10 m + 10 f speakers with all their files; tiny_many_* = every
    # speaker, 4 files (low: up to 4 from one session, high: 1 per session), so all three
    # subsets have about 400 files, as the study's three have about 50k.
    p.add_argument("--few_speakers_per_gender", default="10")
    p.add_argument("--many_files_per_speaker", default="4")
    p.add_argument("--low_max_files_per_session", default="4")
    p.add_argument("--val_fraction", default="0.1",
                   help="validation share per speaker (study 0.01; 0.1 gives the small "
                   "subsets enough validation trials)")
    p.add_argument("--prepare_option", action="append", default=[], metavar="KEY=VALUE",
                   help="more prepare.voxceleb options, e.g. val_trials_tiny=500")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="processes for the corpus and the manifests, and training runs at "
                   "a time (default: the CPU count)")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)}")
    data = args.data_folder.resolve()
    manifests = (args.manifest_folder or data / "manifests_demo").resolve()
    w2v = (args.wav2vec2_folder or data.parent / "wav2vec2_random_tiny").resolve()
    runs_root = args.runs_root.resolve()
    out = args.out.resolve()
    overrides = [str(_abs(Path(f))) for f in (args.overrides or [DEFAULT_OVERRIDES])]
    pretrain_folder = runs_root / "pretrain" / "demo"
    sets = [f"manifest_folder={manifests}", f"data_folder={data}",
            f"random_init.wav2vec2_source={w2v}",
            f"pretrained.wav2vec2_source={pretrain_folder / 'pretrained'}", *args.set]
    options = {key: getattr(args, key) for key in (
        "few_speakers_per_gender", "many_files_per_speaker", "low_max_files_per_session",
        "val_fraction")}
    for item in args.prepare_option:
        key, _, value = item.partition("=")
        options[key] = value
    started = time.monotonic()
    say(f"lowres demo: corpus {data}, runs {runs_root / 'demo'}, results {out}\n"
        f"CPU-sized settings: {', '.join(overrides)} (+ {', '.join(args.set) or 'no --set'})")
    todo = [s for s in STAGES if s in stages]
    finished: dict[str, float] = {}
    say("ETA: " + eta(todo, finished, started))
    for n, name in enumerate(STAGES, 1):
        if name not in stages:
            continue
        todo.remove(name)
        if name == "corpus":
            t = stage_header(n, name, f"SYNTHETIC VoxCeleb-shaped corpus, preset {args.preset}, "
                             f"channel strength {args.channel_strength}")
            make_corpus(data, args.preset, args.corpus_seed, args.channel_strength,
                        args.unlabelled_speakers, args.jobs)
        elif name == "prepare":
            t = stage_header(n, name, "manifests, tiny subsets, validation and test trials")
            prepare(data, manifests, args.jobs, options)
        elif name == "wav2vec2":
            t = stage_header(n, name, "local wav2vec2 (random initialisation)")
            write_random_wav2vec2(w2v)
        elif name == "pretrain":
            t = stage_header(n, name, "the same wav2vec2 pre-trained WITHOUT LABELS on the "
                             "corpus's unlabelled speakers")
            pretrain(data, pretrain_folder, args.pretrain)
        elif name == "untrained":
            t = stage_header(n, name, "each architecture at its random initialisation")
            from lowres.study.grids.runner import parse_overrides

            extra, per_model = parse_overrides(sets, overrides)
            for run in expand("demo", runs_root, subsets=["tiny_few"], extra=extra,
                              model_extra=per_model):
                folder = untrained_folder(runs_root, run.model, run.tag)
                if is_finished(folder):
                    say(f"{run.model}: untrained already evaluated ({folder})")
                    continue
                # the tiny_few run's settings (test sets, seed, model sizes), no training
                evaluate_untrained(run.model, folder, run.overrides)
        elif name == "train":
            t = stage_header(n, name, "train + evaluate x-vector, ECAPA-TDNN, wav2vec2 (random "
                             "init; pre-trained) on the three tiny subsets")
            train(runs_root, overrides, sets, args.jobs)
        else:
            t = stage_header(n, name, "table and figures")
            results(runs_root, out)
        finished[name] = time.monotonic() - t
        say(f"--- {name} took {finished[name]:.0f} s ({eta(todo, finished, started)})")
    say(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
