"""train.py's ``wandb: true`` in offline mode: SpeechBrain's WandBLogger writes an offline run
under OUTPUT/wandb without network, read back from its ``.wandb`` transaction log: the train
and validation scalars by optimiser step, and the hyperparameters as the run's config."""

import importlib.util
import json
import struct
from pathlib import Path

import pytest
from test_train_resume import TRAIN, run_train, train_args

from lowres.io.hparams import HparamsError, plain_values
from lowres.training.speaker_checks import check_hparams

BLOCK, HEADER = 32768, 7  # the .wandb file: LevelDB's log format after a 7-byte W&B header


def wandb_records(path: Path):
    """The protobuf Records of an offline run's ``.wandb`` file (wandb has no reader of its
    own any more: wandb-core writes it as LevelDB log chunks of crc32c, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk = HEADER, b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a chunk: padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += HEADER + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


@pytest.mark.parametrize("yaml, refused", [
    ("wandb: yes please", "wandb.*true or false"),
    ("wandb: true\nwandb_mode: disabled", "wandb_mode.*offline, online"),
    ("wandb: true\nwandb_project: ''", "wandb_project"),
    ("wandb: true\nwandb_init_timeout: 0", "wandb_init_timeout"),
    ("wandb: true", "needs the wandb package"),
])
def test_bad_wandb_keys_are_refused_before_training(yaml, refused, monkeypatch):
    values = plain_values(TRAIN.parents[2] / "hparams" / "xvector_tiny_few.yaml", yaml)
    check_hparams(plain_values(TRAIN.parents[2] / "hparams" / "xvector_tiny_few.yaml",
                               "wandb: true"), world_size=1)  # installed: accepted
    if refused.startswith("needs"):  # as where the package is not installed
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name: None if name == "wandb" else find_spec(name))
    with pytest.raises(HparamsError, match=refused):
        check_hparams(values, world_size=1)


@pytest.mark.slow  # a training run of 8 steps
def test_wandb_offline_run(prepared_manifests, tmp_path):
    out = tmp_path / "run"
    run_train(train_args(prepared_manifests, out, "--max_steps=8", "--val_interval=4",
                         "--log_interval=2", "--wandb=true"))
    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    steps, config = {}, {}
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:  # "train/loss" may come as nested keys
                key = item.key or "/".join(item.nested_key)
                steps.setdefault(key, []).append(record.history.step.num)
                if key == "valid/EER%":
                    assert 0 <= json.loads(item.value_json) <= 100
        elif record.WhichOneof("record_type") == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
    for tag in ("train/loss", "train/acc", "lr"):
        assert steps[tag] == [2, 4, 6, 8], tag
    assert steps["valid/EER%"] == steps["valid/loss"] == [0, 4, 8]  # 0: the untrained model
    assert config["max_steps"] == 8 and config["wandb_mode"] == "offline"  # resolved yaml
