"""lowres.data.loading: seeded on-disk crops, the step-budget sampler, trials and labels."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from lowres.data import loading as data

SR = 16000


@pytest.fixture
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, (spk, seconds) in enumerate([("id0001", 3.0), ("id0001", 5.5), ("id0002", 1.2),
                                        ("id0003", 4.0)]):
        wav = tmp_path / f"{spk}_{i}.wav"
        sf.write(wav, rng.uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32), SR,
                 subtype="FLOAT")
        rows.append({"ID": f"{spk}/s{i}/0000{i}", "duration": seconds, "wav": str(wav),
                     "spk_id": spk, "session": f"s{i}", "gender": "m"})
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_training_crop_is_seeded_read_from_disk_and_exact(manifest, tmp_path, monkeypatch):
    enc = data.speaker_encoder(manifest, tmp_path / "save" / "label_encoder.txt")
    ds = data.train_dataset(manifest, enc, crop_seconds=2.0, seed=7)
    reads = []
    real_read = sf.read

    def spy(path, **kw):
        reads.append(kw)
        return real_read(path, **kw)

    monkeypatch.setattr(data.sf, "read", spy)
    item = ds[(1, 123)]
    assert reads[-1]["stop"] - reads[-1]["start"] == 2 * SR  # only the crop is decoded
    full, _ = real_read(ds.data[ds.data_ids[1]]["wav"], dtype="float32")
    start = data.crop_offset(7, 123, len(full), 2 * SR)
    assert torch.equal(item["sig"], torch.from_numpy(full[start:start + 2 * SR]))
    assert torch.equal(ds[(1, 123)]["sig"], item["sig"])  # same (seed, draw): same crop
    starts = {data.crop_offset(7, d, len(full), 2 * SR) for d in range(50)}
    assert len(starts) > 40 and min(starts) >= 0 and max(starts) <= len(full) - 2 * SR
    assert data.crop_offset(8, 123, len(full), 2 * SR) != start
    assert item["spk_id_encoded"].tolist() == [enc.lab2ind["id0001"]]


def test_short_file_is_used_whole_and_padded_in_batch(manifest, tmp_path):
    enc = data.speaker_encoder(manifest, tmp_path / "enc.txt")
    ds = data.train_dataset(manifest, enc, crop_seconds=2.0, seed=0)
    assert ds[(2, 5)]["sig"].shape[0] == int(1.2 * SR)
    from speechbrain.dataio.batch import PaddedBatch

    batch = PaddedBatch([ds[(0, 0)], ds[(2, 0)]])
    wavs, lens = batch.sig
    assert wavs.shape == (2, 2 * SR)
    assert lens.tolist() == pytest.approx([1.0, 0.6])


def test_validation_uses_the_first_crop(manifest, tmp_path):
    enc = data.speaker_encoder(manifest, tmp_path / "enc.txt")
    ds = data.valid_dataset(manifest, enc, crop_seconds=2.0)
    full, _ = sf.read(ds.data[ds.data_ids[3]]["wav"], dtype="float32")
    assert torch.equal(ds[3]["sig"], torch.from_numpy(full[:2 * SR]))


def test_label_encoder_is_saved_and_reloaded(manifest, tmp_path):
    path = tmp_path / "save" / "label_encoder.txt"
    enc = data.speaker_encoder(manifest, path)
    assert path.is_file() and len(enc) == 3
    assert [enc.lab2ind[s] for s in ("id0001", "id0002", "id0003")] == [0, 1, 2]
    assert data.speaker_encoder(manifest, path).lab2ind == enc.lab2ind


def test_step_budget_sampler_epochs_tile_seeded_permutations():
    sampler = data.StepBudgetSampler(num_items=10, items_per_epoch=4, seed=3)
    stream = []
    for epoch in range(1, 6):
        sampler.set_epoch(epoch)
        items = list(sampler)
        assert len(items) == len(sampler) == 4
        stream += items
    draws = [d for _, d in stream]
    assert draws == list(range(20))  # every draw once, in order, across epochs
    indices = [i for i, _ in stream]
    assert sorted(indices[:10]) == list(range(10)) and sorted(indices[10:20]) == list(range(10))
    assert indices[:10] != indices[10:20]  # a new permutation per pass
    again = data.StepBudgetSampler(10, 4, 3)
    again.set_epoch(3)
    assert list(again) == stream[8:12]  # any epoch is reproducible on its own (resume)
    other = data.StepBudgetSampler(10, 4, 4)
    other.set_epoch(1)
    assert list(other) != stream[:4]


def test_steps_per_epoch():
    assert data.steps_per_epoch("epoch", 49400, 100) == 494
    assert data.steps_per_epoch(3125, 10**6, 100) == 3125
    assert data.steps_per_epoch("epoch", 5, 100) == 1
    assert data.num_epochs(50000, 3125) == 16 and data.num_epochs(50000, 494) == 102
    with pytest.raises(ValueError, match="val_interval"):
        data.steps_per_epoch(0, 10, 1)
