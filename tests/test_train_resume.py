"""Kill-and-resume and DDP runs of recipes/VoxCeleb/train.py on the small synthetic corpus."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lowres.io.run_folder import (
    command_path,
    hyperparams_path,
    read_results,
    results_path,
    save_folder,
    train_log_path,
)

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "recipes" / "VoxCeleb" / "train.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def train_args(manifests, out, *extra, recipe="xvector_tiny_few.yaml"):
    return [
        str(TRAIN), str(ROOT / "hparams" / recipe),
        f"--manifest_folder={manifests}", f"--output_folder={out}", "--device=cpu",
        "--batch_size=8", "--crop_seconds=1.0", "--max_steps=24", "--val_interval=8",
        "--num_workers=0", "--log_interval=4", "--lr=0.005", "--noprogressbar",
        "--ckpt_interval_minutes=0", "--ckpt_interval_steps=3", "--evaluate_after_training=false",
        *extra,
    ]


def launch(args, nproc: int = 1) -> list[str]:
    """The command of a recipe run: plain, or under torchrun with ``nproc`` processes."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [sys.executable, *(torchrun if nproc > 1 else []), *args]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torchrun starts each worker in a session of its
    own, so a process group does not hold them)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # a process that just ended
            pass
    tree = [pid]
    for p in tree:
        tree += [child for child, parent in parents.items() if parent == p]
    return tree


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants at once, as a preempted job's processes die."""
    for p in process_tree(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_once_past(args, out, low: int, high: int, nproc: int = 1) -> None:
    """Start a run and SIGKILL it (with every process it started) once its newest checkpoint
    is at a step in [low, high) (the newest: an older one in the window says nothing of
    where the run is now)."""
    proc = subprocess.Popen(launch(args, nproc), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                steps = [ckpt_step(c) for c in checkpoints(out)]
                if steps and low <= max(steps) < high:
                    break
            except (OSError, TypeError):  # a checkpoint being written or deleted
                pass
            time.sleep(0.2)
        assert proc.poll() is None, "training finished before it could be killed"
        kill_tree(proc.pid)
        proc.wait()
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)


def run_train(args, timeout=300, nproc: int = 1):
    proc = subprocess.run(launch(args, nproc), capture_output=True, text=True, env=ENV,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def checkpoints(out):
    """Completely written checkpoints (train.py saves complete.ckpt last)."""
    save = save_folder(out)
    return sorted(p for p in save.glob("CKPT+*") if (p / "complete.ckpt").is_file())


def ckpt_step(ckpt) -> int:
    import yaml

    return int(yaml.safe_load((ckpt / "brain.ckpt").read_text())["optimizer_step"])


def final_state(out):
    """(embedder weights, meta) of the latest checkpoint."""
    import yaml

    latest = max(checkpoints(out), key=lambda p: yaml.safe_load((p / "CKPT.yaml").read_text())
                 ["unixtime"])
    meta = yaml.safe_load((latest / "CKPT.yaml").read_text())
    return torch.load(latest / "embedder.ckpt"), meta


def best_meta(out):
    """Meta of the checkpoint with the lowest val_eer (the one tested as "best")."""
    import yaml

    metas = [yaml.safe_load((c / "CKPT.yaml").read_text()) for c in checkpoints(out)]
    return min((m for m in metas if "val_eer" in m), key=lambda m: m["val_eer"])


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(prepared_manifests, tmp_path):
    """The published validation schedule (val_schedule pass, the default): tiny_few of the
    small corpus has 87 files, so a pass is 11 batches of 8 and val_interval 8 validates at
    steps 8 and 19 (8 batches into the second pass), not at max_steps 24."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run_train(train_args(prepared_manifests, ref))
    log = train_log_path(ref).read_text()
    validated = [line.split(",")[1].strip() for line in log.splitlines() if "valid" in line]
    assert validated == ["step: 0", "step: 8", "step: 19"], log
    assert "epoch: 3, step: 24" in log

    args = train_args(prepared_manifests, killed)
    kill_once_past(args, killed, 10, 20)  # a mid-run checkpoint past the first validation
    resumed_from = max(ckpt_step(c) for c in checkpoints(killed))
    assert 0 < resumed_from < 24
    # A checkpoint cut short while saving (meta written, files missing) is newer than all:
    # the rerun must drop it and resume from the last complete one.
    import yaml

    latest = max(checkpoints(killed), key=lambda p: p.name)
    meta = yaml.safe_load((latest / "CKPT.yaml").read_text())
    meta["unixtime"] += 1000
    broken = killed / "save" / "CKPT+2099-01-01+00-00-00+00"
    broken.mkdir(exist_ok=True)
    (broken / "CKPT.yaml").write_text(yaml.safe_dump(meta))

    run_train(args)
    assert not broken.exists()
    log = train_log_path(killed).read_text()
    assert f"resumed_at_step: {resumed_from}" in log
    assert log.count("epoch: 0,") == 1  # step-0 validation ran once, not again on resume
    ref_weights, ref_meta = final_state(ref)
    weights, meta = final_state(killed)
    assert meta["step"] == ref_meta["step"] == 24 and "val_eer" not in meta  # no validation
    assert best_meta(killed) == {**best_meta(ref), "unixtime": best_meta(killed)["unixtime"]}
    assert best_meta(ref)["step"] in (8, 19)  # a validation of training, never step 0
    for key, value in ref_weights.items():
        assert torch.equal(value, weights[key]), key

    # Re-running a finished run changes nothing.
    before = sorted(p.name for p in checkpoints(killed))
    run_train(args)
    assert sorted(p.name for p in checkpoints(killed)) == before


@pytest.mark.slow
def test_ddp_kill_and_resume_matches_uninterrupted_ddp_run(prepared_manifests, tmp_path):
    """Two gloo processes, SIGKILLed together past the step-4 validation (and two
    checkpoints or more before the end), resume to the weights and best checkpoint of an
    uninterrupted two-process run: each rank's place in the data and its own random state
    (rng_rank1.ckpt) are restored."""
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    extra = ("--max_steps=18", "--val_interval=4", "--distributed_backend=gloo")
    run_train(train_args(prepared_manifests, ref, *extra), nproc=2)
    args = train_args(prepared_manifests, killed, *extra)
    kill_once_past(args, killed, 5, 16, nproc=2)
    resumed_from = max(ckpt_step(c) for c in checkpoints(killed))
    assert 4 < resumed_from < 18
    assert all((c / "rng_rank1.ckpt").is_file() for c in checkpoints(killed))
    run_train(args, nproc=2)
    assert f"resumed_at_step: {resumed_from}" in train_log_path(killed).read_text()
    ref_weights, ref_meta = final_state(ref)
    weights, meta = final_state(killed)
    assert meta["step"] == ref_meta["step"] == 18
    assert best_meta(killed) == {**best_meta(ref), "unixtime": best_meta(killed)["unixtime"]}
    for key, value in ref_weights.items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.slow
def test_lora_mhfa_kill_and_resume_matches_uninterrupted_run(prepared_manifests, tmp_path):
    """A tiny wav2vec2 with LoRA and MHFA, its LoRA weights in an optimiser group of their
    own (ssl_adaptation_lr), training from step 0: SIGKILLed past the step-6 validation and
    well before the end (a tiny model trains a step in tens of milliseconds), it resumes to
    the weights (LoRA factors, MHFA) and best checkpoint of an uninterrupted run, so the LoRA
    weights and both groups' Adam state and learning rates are restored."""
    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

    tiny = save_tiny_wav2vec2(tmp_path / "w2v2", size="tiny", seed=0)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    extra = (f"--wav2vec2_source={tiny}", "--precision=fp32", "--batch_size=4",
             "--max_steps=30", "--val_interval=6", "--ssl_adaptation=lora", "--lora_rank=2",
             "--ssl_pooling=mhfa", "--mhfa_heads=2", "--mhfa_compression_dim=8",
             "--mhfa_embedding_dim=16", "--wav2vec_initially_frozen=false",
             "--ssl_adaptation_lr=0.02")
    run_train(train_args(prepared_manifests, ref, *extra, recipe="wav2vec2_tiny_few.yaml"))
    args = train_args(prepared_manifests, killed, *extra, recipe="wav2vec2_tiny_few.yaml")
    kill_once_past(args, killed, 7, 25)
    resumed_from = max(ckpt_step(c) for c in checkpoints(killed))
    assert 6 < resumed_from < 30
    run_train(args)
    assert f"resumed_at_step: {resumed_from}" in train_log_path(killed).read_text()
    ref_weights, ref_meta = final_state(ref)
    weights, meta = final_state(killed)
    assert meta["step"] == ref_meta["step"] == 30
    assert best_meta(killed) == {**best_meta(ref), "unixtime": best_meta(killed)["unixtime"]}
    lora_b = [key for key in ref_weights if ".lora_B." in key]
    assert lora_b and all(ref_weights[key].abs().sum() > 0 for key in lora_b)  # LoRA trained
    assert any(key.startswith("mhfa.") for key in ref_weights)
    groups = torch.load(max(checkpoints(killed)) / "optimizer.ckpt")["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(4 * groups[0]["lr"])
    for key, value in ref_weights.items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.slow
def test_ddp_two_processes_gloo(prepared_manifests, tmp_path):
    out = tmp_path / "ddp"
    args = train_args(prepared_manifests, out, "--max_steps=4", "--val_interval=2",
                      "--distributed_backend=gloo", "--evaluate_after_training=true")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    weights, meta = final_state(out)
    assert meta["step"] == 4
    log = train_log_path(out).read_text()
    assert "epoch: 2, step: 4" in log
    # evaluation hook (rank 0 only): the run is finished
    results = read_results(out, "best")
    assert results["checkpoint"]["meta"]["step"] in (2, 4)  # step 0 is never a candidate
    assert results_path(out, "last").is_file()


@pytest.mark.slow
def test_wav2vec2_freeze_schedule_through_train_py(prepared_manifests, tmp_path):
    """Backbone untouched for num_frozen_steps, trains after; the CNN never trains."""
    from transformers import Wav2Vec2Model

    from lowres.models.tiny_wav2vec2 import save_tiny_wav2vec2

    tiny = save_tiny_wav2vec2(tmp_path / "w2v2", size="tiny", seed=0)
    initial = Wav2Vec2Model.from_pretrained(tiny).state_dict()
    out = tmp_path / "run"
    args = [str(TRAIN), str(ROOT / "hparams" / "wav2vec2_tiny_few.yaml"),
            f"--manifest_folder={prepared_manifests}", f"--output_folder={out}",
            f"--wav2vec2_source={tiny}", "--device=cpu", "--batch_size=4", "--crop_seconds=1.0",
            "--val_interval=2", "--num_frozen_steps=2", "--lr_schedule=constant", "--lr=0.001",
            "--num_workers=0", "--noprogressbar", "--ckpt_interval_minutes=0",
            "--evaluate_after_training=false"]

    def backbone(max_steps):
        run_train([*args, f"--max_steps={max_steps}"])
        weights, meta = final_state(out)
        assert meta["step"] == max_steps
        return {k[len("wav2vec2."):]: v for k, v in weights.items() if k.startswith("wav2vec2.")}

    frozen = backbone(2)  # steps 0 and 1: frozen
    assert all(torch.equal(frozen[k], initial[k]) for k in initial if k in frozen)
    trained = backbone(4)  # resumes at step 2: the transformer trains, the CNN stays
    changed = {k for k in initial if k in trained and not torch.equal(trained[k], initial[k])}
    assert any(k.startswith("encoder.layers.") for k in changed)
    assert not any(k.startswith("feature_extractor.") for k in changed)


@pytest.mark.slow
def test_missing_manifests_are_prepared_first(synthetic_corpus, tmp_path):
    """train.py runs prepare.voxceleb (main process) when the subset's manifests are missing."""
    from conftest import SMALL_PREPARE_ARGS

    options = dict(zip(SMALL_PREPARE_ARGS[::2], SMALL_PREPARE_ARGS[1::2], strict=True))
    options = ", ".join(f"{k.lstrip('-')}: {v}" for k, v in options.items())
    manifests, out = tmp_path / "manifests", tmp_path / "run"
    args = train_args(manifests, out, f"--data_folder={synthetic_corpus}",
                      f"--prepare_options={{{options}, jobs: 2}}", "--max_steps=2",
                      "--val_interval=2")
    run_train(args)
    assert (manifests / "tiny_few" / "train.csv").is_file()
    assert (manifests / "test" / "original.csv").is_file()
    _, meta = final_state(out)
    assert meta["step"] == 2
    from lowres.io.hparams import plain_values

    saved = plain_values(hyperparams_path(out))  # the run's resolved, standalone hparams
    assert saved["manifest_folder"] == str(manifests) and saved["max_steps"] == 2
    assert command_path(out).read_text().count("train.py") == 1
    assert (out / "env.log").is_file()
    assert (out / "train.py").read_text() == TRAIN.read_text()  # the recipe, not a library file
    assert not (out / "runs.py").exists()


def test_checkpoints_a_kill_cut_short_are_removed_even_with_an_empty_ckpt_yaml(tmp_path):
    """A kill while SpeechBrain writes CKPT.yaml (first) leaves it empty, which its
    find_checkpoints cannot read; such a folder and one without complete.ckpt go, a
    complete checkpoint stays and is the one recovered."""
    from speechbrain.utils.checkpoints import Checkpointer

    from lowres.training.runs import COMPLETE, CompleteMarker, remove_incomplete_checkpoints

    layer = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(tmp_path, {"layer": layer, COMPLETE: CompleteMarker()})
    good = checkpointer.save_checkpoint(meta={"step": 3}).path
    empty_yaml = tmp_path / "CKPT+2099-01-01+00-00-00+00"
    empty_yaml.mkdir()
    (empty_yaml / "CKPT.yaml").write_text("")
    no_marker = tmp_path / "CKPT+2099-01-02+00-00-00+00"
    no_marker.mkdir()
    (no_marker / "CKPT.yaml").write_text("end-of-epoch: true\nstep: 5\nunixtime: 4.0e9\n")
    remove_incomplete_checkpoints(checkpointer)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]
    assert checkpointer.find_checkpoint().meta["step"] == 3
