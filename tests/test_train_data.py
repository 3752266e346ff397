"""lowres.data.loading: seeded on-disk crops, the step-budget sampler, trials and labels."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from lowres.data import crops
from lowres.data import loading as data
from lowres.io import audio
from lowres.io.lists import ListError, read_manifest, write_manifest
from lowres.io.run_folder import label_encoder_path

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
    write_manifest(path, pd.DataFrame(rows))
    return path


def test_training_crop_is_seeded_read_from_disk_and_exact(manifest, tmp_path, monkeypatch):
    enc = data.speaker_encoder(manifest, label_encoder_path(tmp_path))
    ds = data.train_dataset(manifest, enc, crop_seconds=2.0, seed=7)
    reads = []
    real_read = sf.read

    def spy(path, **kw):
        reads.append(kw)
        return real_read(path, **kw)

    monkeypatch.setattr(audio.sf, "read", spy)
    item = ds[(1, 123)]
    assert reads[-1]["stop"] - reads[-1]["start"] == 2 * SR  # only the crop is decoded
    full, _ = real_read(ds.data[ds.data_ids[1]]["wav"], dtype="float32")
    start = crops.crop_offset(7, 123, len(full), 2 * SR)
    assert torch.equal(item["sig"], torch.from_numpy(full[start:start + 2 * SR]))
    assert torch.equal(ds[(1, 123)]["sig"], item["sig"])  # same (seed, draw): same crop
    starts = {crops.crop_offset(7, d, len(full), 2 * SR) for d in range(50)}
    assert len(starts) > 40 and min(starts) >= 0 and max(starts) <= len(full) - 2 * SR
    assert crops.crop_offset(8, 123, len(full), 2 * SR) != start
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
    path = label_encoder_path(tmp_path)
    enc = data.speaker_encoder(manifest, path)
    assert path.is_file() and len(enc) == 3
    assert [enc.lab2ind[s] for s in ("id0001", "id0002", "id0003")] == [0, 1, 2]
    assert data.speaker_encoder(manifest, path).lab2ind == enc.lab2ind


def test_step_budget_sampler_epochs_tile_seeded_permutations():
    sampler = data.StepBudgetSampler(num_items=10, epoch_ends=[4, 8, 12, 16, 20], seed=3)
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
    again = data.StepBudgetSampler(10, [4, 8, 12, 16, 20], 3)
    again.set_epoch(3)
    assert list(again) == stream[8:12]  # any epoch is reproducible on its own (resume)
    other = data.StepBudgetSampler(10, [4, 8, 12, 16, 20], 4)
    other.set_epoch(1)
    assert list(other) != stream[:4]
    # Epochs of different lengths (the stretches between validations), DDP shares.
    uneven = data.StepBudgetSampler(10, [6, 8, 20], 3)
    uneven.set_epoch(3)
    assert list(uneven) == stream[8:20]
    ranks = [data.StepBudgetSampler(10, [6, 8, 20], 3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(3)
    assert len(ranks[0]) == 6 and list(ranks[0]) == stream[8:20:2]
    assert list(ranks[1]) == stream[9:20:2]


def test_passes_are_topped_up_to_full_batches():
    """10 items at batch 4: a pass is 3 full batches, its last topped up with its first items."""
    per_pass = data.pass_batches(10, 4) * 4
    sampler = data.StepBudgetSampler(10, [per_pass, 2 * per_pass], seed=0, items_per_pass=12)
    passes = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        passes.append([i for i, _ in sampler])
    for p in passes:
        assert len(p) == 12 and sorted(p[:10]) == list(range(10)) and p[10:] == p[:2]
    assert passes[0] != passes[1]


def test_published_validation_schedule_counts_batches_within_each_pass():
    # 10 files, batch 2: passes of 5 batches; every 2 batches of a pass, none at max_steps
    s = data.training_schedule("pass", 2, 10, 2, max_steps=15)
    assert s.validation_steps == [2, 4, 7, 9, 12, 14]
    assert s.epoch_ends == (2, 4, 7, 9, 12, 14, 15) and s.validate[-1] is False
    assert s.items_per_pass == 10
    # 11 files: passes of 6 batches (the last one topped up), 12 draws each
    s = data.training_schedule("pass", 2, 11, 2, max_steps=12)
    assert s.validation_steps == [2, 4, 6, 8, 10, 12] and s.items_per_pass == 12
    # full (docs/study.md, 'Training and evaluation in the published runs'): 3,125 / 6,250 /
    # 9,375 batches into each 10,689-batch pass
    full = data.training_schedule("pass", 3125, 1_068_871, 100, max_steps=50_000)
    assert full.validation_steps[:6] == [3125, 6250, 9375, 10689 + 3125, 10689 + 6250,
                                         10689 + 9375]
    assert len(full.validation_steps) == 14 and 50_000 not in full.validation_steps
    # tiny sets: at the end of every pass (tiny_many: 47,952 files, 480 batches)
    tiny = data.training_schedule("pass", "epoch", 47_952, 100, max_steps=50_000)
    assert tiny.validation_steps[:2] == [480, 960] and tiny.validation_steps[-1] == 49_920
    assert tiny.epoch_ends[-1] == 50_000 and not tiny.validate[-1]
    few = data.training_schedule("pass", "epoch", 49_400, 100, max_steps=50_000)
    assert len(few.validation_steps) == 101 and few.validation_steps[-1] == 49_894
    # a pass shorter than val_interval: no validation ever
    assert data.training_schedule("pass", 8, 10, 2, max_steps=100).validation_steps == []


def test_steps_validation_schedule():
    s = data.training_schedule("steps", 3125, 1_068_871, 100, max_steps=50_000)
    assert s.validation_steps == list(range(3125, 50_001, 3125)) and s.validate[-1]
    assert s.items_per_pass == 1_068_871  # the stream runs on through the passes
    s = data.training_schedule("steps", "epoch", 49_400, 100, max_steps=50_000)
    assert len(s.epoch_ends) == 102 and s.epoch_ends[-2:] == (49_894, 50_000)
    assert data.training_schedule("steps", 8, 10, 2, max_steps=20).validation_steps == [8, 16,
                                                                                        20]
    with pytest.raises(ValueError, match="val_interval"):
        data.training_schedule("steps", 0, 10, 1, max_steps=5)
    with pytest.raises(ValueError, match="val_schedule"):
        data.training_schedule("often", 2, 10, 1, max_steps=5)


# ---- utterance normalisation (wav2vec2's input_normalisation: utterance) ----------------


def test_statistics_are_the_whole_files_and_computed_once(manifest, monkeypatch):
    from prepare import wav_stats

    assert wav_stats.add_wav_stats(manifest) is True
    df = read_manifest(manifest)
    assert list(df.columns[-2:]) == ["wav_mean", "wav_std"]
    for row in df.itertuples():
        full, _ = sf.read(row.wav, dtype="float32")
        assert row.wav_mean == pytest.approx(float(np.mean(full, dtype=np.float64)), rel=1e-12)
        assert row.wav_std == pytest.approx(float(np.std(full, dtype=np.float64)), rel=1e-12)
    assert not (manifest.parent / wav_stats.CACHE).exists()  # chunks removed when done
    reads = []
    monkeypatch.setattr(wav_stats, "file_stats", lambda p: reads.append(p))
    assert wav_stats.add_wav_stats(manifest) is False and reads == []  # cached in the manifest


def test_statistics_stage_resumes_after_a_crash(manifest, monkeypatch):
    from prepare import wav_stats
    from prepare.errors import PrepareError

    before = manifest.read_text()
    real, reads = wav_stats.file_stats, []

    def crash_on_third(path):
        if len(reads) == 2:
            raise PrepareError("killed")
        reads.append(path)
        return real(path)

    monkeypatch.setattr(wav_stats, "CHUNK", 1)
    monkeypatch.setattr(wav_stats, "file_stats", crash_on_third)
    with pytest.raises(PrepareError, match="killed"):
        wav_stats.add_wav_stats(manifest, jobs=1)
    assert manifest.read_text() == before  # nothing half-written
    done = list(reads)
    monkeypatch.setattr(wav_stats, "file_stats", lambda p: reads.append(p) or real(p))
    assert wav_stats.add_wav_stats(manifest, jobs=1)
    assert sorted(reads[2:]) == sorted(set(read_manifest(manifest).wav) - set(done))
    assert wav_stats.has_stats(read_manifest(manifest))


def test_statistics_command_names_a_malformed_manifest(manifest, capsys):
    from prepare import wav_stats

    broken = manifest.parent / "broken.csv"
    broken.write_text(manifest.read_text().replace("wav", "path", 1))  # no wav column
    before = broken.read_text()
    assert wav_stats.main([str(broken), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(broken) in err and "'wav'" in err, err
    assert broken.read_text() == before


def test_utterance_normalised_crops(manifest, tmp_path):
    from prepare.wav_stats import add_wav_stats

    enc = data.speaker_encoder(manifest, tmp_path / "enc.txt")
    with pytest.raises(ListError, match="prepare.wav_stats"):  # no statistics yet
        data.train_dataset(manifest, enc, crop_seconds=2.0, seed=7, normalise=True)
    add_wav_stats(manifest)
    plain = data.train_dataset(manifest, enc, crop_seconds=2.0, seed=7)
    normed = data.train_dataset(manifest, enc, crop_seconds=2.0, seed=7, normalise=True)
    row = read_manifest(manifest).set_index("ID").loc[normed.data_ids[1]]
    crop, item = plain[(1, 123)]["sig"], normed[(1, 123)]["sig"]
    torch.testing.assert_close(item, (crop - row.wav_mean) / row.wav_std, rtol=1e-5, atol=1e-6)
    own = (crop - crop.mean()) / crop.std(correction=0)  # the crop's own normalisation
    assert float((item - own).abs().max()) > 1e-3
    valid = data.valid_dataset(manifest, enc, crop_seconds=2.0, normalise=True)
    first = data.valid_dataset(manifest, enc, crop_seconds=2.0)[3]["sig"]
    row = read_manifest(manifest).set_index("ID").loc[valid.data_ids[3]]
    torch.testing.assert_close(valid[3]["sig"], (first - row.wav_mean) / row.wav_std,
                               rtol=1e-5, atol=1e-6)


def test_whole_file_normalised_either_way_is_the_same(manifest):
    """Test utterances are whole: the embedder's normalisation equals the file statistics'."""
    from lowres.models.wav2vec2 import normalise_waveform
    from prepare.wav_stats import add_wav_stats

    add_wav_stats(manifest)
    row = read_manifest(manifest).iloc[0]
    full = torch.from_numpy(sf.read(row.wav, dtype="float32")[0])
    by_stats = crops.normalise_with(full, row.wav_mean, row.wav_std)
    by_embedder, _ = normalise_waveform(full[None], torch.tensor([full.numel()]))
    torch.testing.assert_close(by_stats, by_embedder[0], rtol=1e-5, atol=1e-5)
