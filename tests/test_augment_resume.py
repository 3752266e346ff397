"""An augmented run of recipes/VoxCeleb/train.py, killed and resumed, ends equal to an
uninterrupted one: augmentation draws are a pure function of (seed, draw), no state. A
run augmenting on the device (augment_side: device) trains as one augmenting in the loader."""


import pytest
import torch
from test_train_resume import (
    checkpoints,
    ckpt_step,
    final_state,
    kill_once_past,
    run_train,
    train_args,
)

from lowres.io.lists import read_manifest
from lowres.io.run_folder import train_log_path
from prepare.augment_sets import prepare_augment_sets
from prepare.synthetic.augment_sets import generate_augment_sets


def every_augmentation(folder) -> list[str]:
    """train.py options turning every augmentation on, the collections prepared in ``folder``."""
    sets = folder / "sets"
    generate_augment_sets(sets, seed=0)
    prepare_augment_sets(sets / "csv", sets / "musan", sets / "RIRS_NOISES")
    return [f"--augment_folder={sets / 'csv'}", "--augment_noise=true", "--augment_music=true",
            "--augment_babble=true", "--augment_reverb=true", "--augment_prob=0.8",
            "--augment_max=2", "--speed_perturb=true", "--speed_new_speakers=true"]


@pytest.mark.slow
def test_killed_augmented_run_resumes_to_the_uninterrupted_one(prepared_manifests, tmp_path):
    # workers: a stateful augmentation would not resume equal
    every = [*every_augmentation(tmp_path), "--num_workers=2"]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    run_train(train_args(prepared_manifests, ref, *every))
    args = train_args(prepared_manifests, killed, *every)
    kill_once_past(args, killed, 10, 20)
    resumed_from = max(ckpt_step(c) for c in checkpoints(killed))
    run_train(args)
    assert f"resumed_at_step: {resumed_from}" in train_log_path(killed).read_text()
    assert "augmenting the training crops" in (killed / "log.txt").read_text()
    ref_weights, ref_meta = final_state(ref)
    weights, meta = final_state(killed)
    assert meta["step"] == ref_meta["step"] == 24
    for key, value in ref_weights.items():
        assert torch.equal(value, weights[key]), key
    latest = max(checkpoints(killed), key=ckpt_step)
    n_speakers = read_manifest(prepared_manifests / "tiny_few" / "train.csv").spk_id.nunique()
    classes = torch.load(latest / "classifier.ckpt")["weight"].shape[0]
    assert classes == 3 * n_speakers  # speed-perturbed speakers: three classes each


@pytest.mark.slow  # two training runs of 4 steps
def test_device_side_run_trains_as_the_loader_side(prepared_manifests, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    every = [*every_augmentation(tmp_path), "--max_steps=4", "--val_interval=4",
             "--log_interval=1", "--lr_schedule=constant", "--tensorboard=true"]
    losses = {}
    for side in ("loader", "device"):
        out = tmp_path / side
        run_train(train_args(prepared_manifests, out, *every, f"--augment_side={side}"))
        events = EventAccumulator(str(out / "tensorboard"))
        events.Reload()
        losses[side] = [e.value for e in events.Scalars("train/loss")]
    # step 1 sees the same augmented batch (float rounding); unaugmented it is ~1 % off.
    # Later steps drift a little: Adam's first updates are about lr * sign(gradient)
    assert losses["device"][0] == pytest.approx(losses["loader"][0], abs=2e-4)
    assert losses["device"] == pytest.approx(losses["loader"], rel=1e-3)
