"""train.py's ``tensorboard: true``: SpeechBrain's TensorboardLogger, read back from the
event files: train loss, accuracy and lr, and the validation EER, by optimiser step."""

from pathlib import Path

import pytest
from test_train_resume import run_train, train_args


@pytest.mark.slow  # a training run of 8 steps
def test_tensorboard_event_files(prepared_manifests, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_train(train_args(prepared_manifests, out, "--max_steps=8", "--val_interval=4",
                         "--log_interval=2", "--tensorboard=true"))
    events = EventAccumulator(str(Path(out) / "tensorboard"))
    events.Reload()
    steps = {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    for tag in ("train/loss", "train/acc", "lr"):
        assert steps[tag] == [2, 4, 6, 8], tag
    assert steps["valid/EER%"] == [0, 4, 8]  # step 0: the untrained model
    assert all(0 <= e.value <= 100 for e in events.Scalars("valid/EER%"))
