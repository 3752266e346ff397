"""Large-margin fine-tuning (issue 13): a stage started with init_from_run begins from its
parent's best weights, keeps its own folder and checkpoints, and resumes after SIGKILL."""


import pytest
import torch
import yaml
from test_train_resume import (
    TRAIN,
    checkpoints,
    ckpt_step,
    final_state,
    kill_once_past,
    run_train,
    train_args,
)

from lowres.io.hparams import HparamsError, plain_values
from lowres.io.run_folder import hyperparams_path, train_log_path
from lowres.training.parent_run import parent_checkpoint
from lowres.training.speaker_checks import check_hparams

STAGE = ["--val_schedule=steps", "--margin=0.5", "--lr_schedule=constant"]


def test_init_from_run_is_checked_before_training(tmp_path):
    values = plain_values(TRAIN.parents[2] / "hparams" / "xvector_tiny_few.yaml",
                          f"init_from_run: {tmp_path}\noutput_folder: {tmp_path / 'child'}")
    with pytest.raises(HparamsError, match="init_from_run.*no checkpoint with a val_eer"):
        check_hparams(values, world_size=1)
    with pytest.raises(HparamsError, match="init_from_run.*its own"):
        parent_checkpoint(tmp_path, tmp_path)


@pytest.mark.slow
def test_stage_starts_from_the_parent_and_resumes(prepared_manifests, tmp_path):
    parent, still, child = tmp_path / "parent", tmp_path / "still", tmp_path / "child"
    run_train(train_args(prepared_manifests, parent, "--max_steps=8", "--val_schedule=steps"))
    best = min((c for c in checkpoints(parent)),
               key=lambda c: yaml.safe_load((c / "CKPT.yaml").read_text()).get("val_eer", 9))

    # lr 1e-30: one step moves no weight, so the stage's weights are the ones it started from
    run_train(train_args(prepared_manifests, still, f"--init_from_run={parent}",
                         "--max_steps=1", "--lr=1e-30", *STAGE))
    weights, _ = final_state(still)
    for name in ("embedder", "classifier"):
        want = torch.load(best / f"{name}.ckpt")
        got = weights if name == "embedder" else torch.load(
            max(checkpoints(still), key=ckpt_step) / "classifier.ckpt")
        for key, value in want.items():
            if value.is_floating_point() and "running_" not in key:  # BatchNorm stats move
                assert torch.equal(value, got[key]), (name, key)

    args = train_args(prepared_manifests, child, f"--init_from_run={parent}", "--max_steps=16",
                      "--crop_seconds=1.5", *STAGE)
    kill_once_past(args, child, 3, 12)  # kill once a checkpoint of the stage exists
    resumed_from = max(ckpt_step(c) for c in checkpoints(child))
    run_train(args)
    log = train_log_path(child).read_text()
    assert f"resumed_at_step: {resumed_from}" in log
    assert log.count("init_from_run") == 1  # the resumed stage kept its own weights
    _, meta = final_state(child)
    assert meta["step"] == 16
    assert plain_values(hyperparams_path(child))["init_from_run"] == str(parent)
