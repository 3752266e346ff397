"""recipes/VoxCeleb/train.py with data_format shards: trains, validates and tests from the
shards alone (the wav files deleted), and a SIGKILLed run resumes to the same result."""

import os
import re
import shutil

import pandas as pd
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

from lowres.io.run_folder import read_results, train_log_path
from prepare.shards import write_shards


@pytest.fixture(scope="module")
def shards_only(prepared_manifests, tmp_path_factory):
    """tiny_few's manifests and test sets with their wavs copied, sharded, then deleted."""
    root = tmp_path_factory.mktemp("shards_only")
    manifests, wavs = root / "manifests", root / "wav"
    for csv in [*(prepared_manifests / "tiny_few").glob("*.csv"),
                *(prepared_manifests / "test").glob("*.csv")]:
        df = pd.read_csv(csv)
        if "wav" in df.columns:
            new = [str(wavs / f"{i}.wav") for i in df.ID.str.replace("/", "_")]
            for old, path in zip(df.wav, new, strict=True):
                os.makedirs(wavs, exist_ok=True)
                shutil.copyfile(old, path)
            df["wav"] = new
        (manifests / csv.parent.name).mkdir(parents=True, exist_ok=True)
        df.to_csv(manifests / csv.parent.name / csv.name, index=False)
    for trials in [*(prepared_manifests / "tiny_few").glob("*.txt"),
                   *(prepared_manifests / "test").glob("*.txt")]:
        shutil.copyfile(trials, manifests / trials.parent.name / trials.name)
    write_shards(manifests, root / "S", ["tiny_few"], shard_size=30)
    shutil.rmtree(wavs)
    return manifests, root / "S"


def validations(out) -> dict[int, str]:
    """step -> validation EER logged in train_log.txt (the last one when logged twice)."""
    found = {}
    for line in train_log_path(out).read_text().splitlines():
        match = re.search(r"step: (\d+),.*valid EER%: (\S+)", line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


@pytest.mark.slow
def test_shard_run_resumes_exactly_and_needs_no_wav_files(shards_only, tmp_path):
    manifests, shard_folder = shards_only
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    extra = ("--data_format=shards", f"--shard_folder={shard_folder}")
    run_train(train_args(manifests, ref, *extra, "--evaluate_after_training=true"))
    results = read_results(ref, "best")
    assert set(results["test_sets"]) == {"original", "extended", "hard"}  # tested from shards
    log = (ref / "log.txt").read_text()  # the run says which data trained it
    assert "training data from WebDataset shards: " in log
    assert f" shards {shard_folder}/tiny_few/train/train-*.tar (" in log

    args = train_args(manifests, killed, *extra)
    kill_once_past(args, killed, 10, 20)  # past the first validation
    resumed_from = max(ckpt_step(c) for c in checkpoints(killed))
    run_train(args)
    assert f"resumed_at_step: {resumed_from}" in train_log_path(killed).read_text()
    ref_weights, ref_meta = final_state(ref)
    weights, meta = final_state(killed)
    assert meta["step"] == ref_meta["step"] == 24
    assert meta.get("val_eer") == ref_meta.get("val_eer")
    assert validations(killed) == validations(ref)  # the same EERs at the same steps
    for key, value in ref_weights.items():
        assert torch.equal(value, weights[key]), key
