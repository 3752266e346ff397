"""What the processes of a DDP run must agree on (lowres.training.ranks), on CPU with gloo:
a non-finite loss on one rank stops them all at one step, each rank draws its own dropout
and masks, only the main process writes the label encoder, and (slow) the main process's
preparation and evaluation may outlast the process group's timeout."""

import datetime
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from speechbrain.dataio.encoder import CategoricalEncoder
from test_train_resume import ENV, TRAIN, final_state, train_args

from lowres.io.hparams import resolve_hparams
from lowres.io.lists import write_manifest
from lowres.io.run_folder import LABEL_ENCODER, read_results, save_folder, train_log_path
from lowres.training.runs import ResumableBrain, start_run
from lowres.training.speaker_loaders import shared_speaker_encoder

ROOT = TRAIN.parents[2]


def _in_two_gloo_processes(func, tmp_path, *args) -> None:
    """``func(rank, tmp_path, *args)`` in 2 spawned processes of a gloo process group."""
    mp.start_processes(_join_group_then, args=(func, str(tmp_path), args), nprocs=2,
                       start_method="spawn")


def _join_group_then(rank: int, func, tmp_path: str, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path}/group", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=60))
    func(rank, Path(tmp_path), *args)
    torch.distributed.destroy_process_group()


def _count_nonfinite(rank: int, tmp_path: Path, nonfinite_on_rank_1: list) -> None:
    brain = ResumableBrain.__new__(ResumableBrain)  # only the loss check is exercised
    brain.nonfinite_count, brain.nonfinite_patience = 0, 1
    stopped = None
    for step in range(6):
        bad = rank == 1 and step in nonfinite_on_rank_1
        try:
            brain.check_loss_isfinite(torch.tensor(float("inf") if bad else 1.0))
        except ValueError:
            stopped = step
            break
    (tmp_path / f"rank{rank}").write_text(str(stopped))


def test_a_loss_not_finite_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """With nonfinite_patience 1, rank 1's non-finite losses at steps 1 and 3 stop training
    at step 3 on both ranks (a rank that stopped alone would leave the other blocked in
    the next collective until the timeout)."""
    _in_two_gloo_processes(_count_nonfinite, tmp_path, [1, 3])
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["3", "3"]


def _label_encoder(rank: int, tmp_path: Path) -> None:
    save = CategoricalEncoder.save

    def recorded_save(encoder, path):
        with open(tmp_path / "savers", "a") as f:
            f.write(f"{rank}\n")
        save(encoder, path)

    CategoricalEncoder.save = recorded_save
    if rank == 0:
        time.sleep(2)  # the main process comes late
    encoder = shared_speaker_encoder(tmp_path / "train.csv", tmp_path / LABEL_ENCODER, 1)
    (tmp_path / f"rank{rank}").write_text(json.dumps(encoder.lab2ind))


def test_only_the_main_process_writes_the_label_encoder(tmp_path):
    """A rank other than 0 waits for label_encoder.txt and reads it, even when it gets
    there first: with one writer, no rank reads a file another is still writing."""
    speakers = [f"id{i:05d}" for i in range(8)]
    write_manifest(tmp_path / "train.csv", pd.DataFrame({
        "ID": [f"{s}_{j}" for s in speakers for j in range(2)], "duration": 3.0,
        "wav": "x.wav", "spk_id": [s for s in speakers for _ in range(2)], "session": "",
        "gender": ""}))
    _in_two_gloo_processes(_label_encoder, tmp_path)
    assert (tmp_path / "savers").read_text() == "0\n"
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text()
    assert len(json.loads((tmp_path / "rank0").read_text())) == 8


def _built_then_draw(tmp_path, rank: str | None) -> torch.Tensor:
    env = {"RANK": rank, "WORLD_SIZE": "2"} if rank is not None else {}
    saved = {k: os.environ.pop(k, None) for k in ("RANK", "WORLD_SIZE")}
    os.environ.update(env)
    try:
        resolved = resolve_hparams(str(ROOT / "hparams" / "xvector_tiny_few.yaml"), {
            "output_folder": str(tmp_path / f"run{rank}"), "data_folder": str(tmp_path)})
        start_run(resolved, world_size=2 if rank is not None else 1)
        return torch.rand(8)
    finally:
        for k in ("RANK", "WORLD_SIZE"):
            os.environ.pop(k, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def test_each_rank_draws_its_own_model_randomness_and_rank_0_the_one_process_run(tmp_path):
    """After the hparams are built (every process seeded alike), rank R > 0 is reseeded
    with seed + R: its dropout and masks differ from rank 0's, and rank 0 draws what a
    one-process run draws."""
    one_process = _built_then_draw(tmp_path, None)
    rank0, rank1 = _built_then_draw(tmp_path, "0"), _built_then_draw(tmp_path, "1")
    assert torch.equal(rank0, one_process)
    assert not torch.equal(rank1, rank0)


# Run as ``torchrun ... driver.py train.py ARGS``: the default process group times out
# after 10 s (SpeechBrain sets 2 h), and the main process's preparation of the manifests
# and its evaluation after training each take 20 s longer than they do; each process that
# evaluates appends its rank to $EVALUATED_BY.
DRIVER = textwrap.dedent("""
    import datetime, os, runpy, sys, time
    import torch.distributed as dist

    init = dist.init_process_group
    def short_timeout(*args, **kwargs):
        kwargs["timeout"] = datetime.timedelta(seconds=10)
        return init(*args, **kwargs)
    dist.init_process_group = short_timeout

    import prepare.voxceleb
    import lowres.scoring.evaluation as evaluation
    def slowed(func):
        def run(*args, **kwargs):
            time.sleep(20)
            return func(*args, **kwargs)
        return run
    prepare.voxceleb.prepare_voxceleb = slowed(prepare.voxceleb.prepare_voxceleb)
    def recorded(func):
        def run(*args, **kwargs):
            with open(os.environ["EVALUATED_BY"], "a") as f:
                f.write(os.environ["RANK"] + "\\n")
            return func(*args, **kwargs)
        return run
    evaluation.evaluate_after_training = recorded(slowed(evaluation.evaluate_after_training))
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
""")


@pytest.mark.slow
def test_main_process_work_may_outlast_the_process_group_timeout(synthetic_corpus, tmp_path):
    """The other ranks wait for the manifests in a barrier of their own (rank_wait_hours)
    and leave the process group before rank 0 tests the run, so neither wait can reach the
    group's timeout: the run finishes and is tested, by rank 0 alone."""
    from conftest import SMALL_PREPARE_ARGS

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    options = dict(zip(SMALL_PREPARE_ARGS[::2], SMALL_PREPARE_ARGS[1::2], strict=True))
    options = ", ".join(f"{k.lstrip('-')}: {v}" for k, v in options.items())
    manifests, out = tmp_path / "manifests", tmp_path / "run"
    args = train_args(manifests, out, f"--data_folder={synthetic_corpus}",
                      f"--prepare_options={{{options}, jobs: 2}}", "--max_steps=4",
                      "--val_interval=2", "--distributed_backend=gloo",
                      "--evaluate_after_training=true", "--test_sets=[original]",
                      "--evaluate_last=false")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(driver), *args], capture_output=True,
                          text=True, env={**ENV, "EVALUATED_BY": str(tmp_path / "evaluated_by")},
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "epoch: 2, step: 4" in train_log_path(out).read_text()
    assert read_results(out, "best")["test_sets"]["original"]["n_trials"] > 0
    assert (save_folder(out) / LABEL_ENCODER).is_file()
    assert final_state(out)[1]["step"] == 4
    assert (tmp_path / "evaluated_by").read_text() == "0\n"
