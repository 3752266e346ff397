"""prepare.shards (writing: counts, interleaving, atomic and resumable), lowres.data.shards
(reading, the shards' order over passes, ranks and workers) and lowres.data.staging."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from lowres.data import loading
from lowres.data import shards as shard_data
from lowres.data.staging import stage
from lowres.io.audio import load_audio, read_segment
from lowres.io.lists import ListError, write_manifest
from prepare import shards as writer

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = {"id00001": 9, "id00002": 5, "id00003": 2}  # files per speaker


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> Path:
    """M/sub/{train,val}.csv and M/test/original.csv over small noise wavs (16 kHz)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)

    def files(split, speakers):
        rows = []
        for spk, n in speakers.items():
            for k in range(n):
                wav = root / "wav" / split / spk / "s1" / f"{k:05d}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                frames = int(rng.integers(4000, 12000))
                sf.write(wav, (rng.standard_normal(frames) * 3000).astype(np.int16), 16000)
                rows.append({"ID": f"{spk}/s1/{k:05d}", "duration": frames / 16000,
                             "wav": str(wav), "spk_id": spk, "session": "s1", "gender": "m"})
        return pd.DataFrame(rows)

    m = root / "manifests"
    write_manifest(m / "sub" / "train.csv", files("train", SPEAKERS))
    write_manifest(m / "sub" / "val.csv", files("val", {"id00001": 2, "id00002": 2}))
    write_manifest(m / "test" / "original.csv", files("test", {"id10001": 3, "id10002": 2}))
    return m


def write(manifests, out, seed=writer.SEED):
    writer.write_shards(manifests, out, shard_size=5, seed=seed)


def tables(folder):
    index = shard_data.read_index(folder)
    return index, [json.loads((folder / e["table"]).read_text()) for e in index["shards"]]


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_counts_contents_and_webdataset_format(manifests, tmp_path):
    import webdataset

    out = tmp_path / "S"
    proc = subprocess.run([sys.executable, "-m", "prepare.shards", "--manifest_folder",
                           str(manifests), "--out", str(out), "--shard_size", "5"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "3 splits, 25 files in 6 shards" in proc.stdout
    train = pd.read_csv(manifests / "sub" / "train.csv")
    index, parts = tables(out / "sub" / "train")
    assert index["samples"] == len(train) == 16 and index["speakers"] == 3
    assert [e["samples"] for e in index["shards"]] == [5, 5, 5, 1]  # the last one: the rest
    assert sorted(k for t in parts for k in t["keys"]) == sorted(train.ID)
    assert shard_data.read_index(out / "sub" / "val")["samples"] == 4
    assert shard_data.read_index(out / "test")["samples"] == 5
    # each sample: the wav file's bytes and its manifest row, readable by webdataset
    rows = train.set_index("ID")
    urls = [str(out / "sub" / "train" / e["name"]) for e in index["shards"]]
    seen = 0
    for sample in webdataset.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert sample["wav"] == Path(rows.loc[sample["__key__"], "wav"]).read_bytes()
        assert meta["spk_id"] == rows.loc[sample["__key__"], "spk_id"] == meta["ID"][:7]
        seen += 1
    assert seen == 16
    for entry in index["shards"]:
        assert sha(out / "sub" / "train" / entry["name"]) == entry["sha256"]


def test_speakers_interleaved_at_random_and_seeded(manifests, tmp_path):
    write(manifests, tmp_path / "a")
    write(manifests, tmp_path / "b")
    write(manifests, tmp_path / "c", seed=2)
    _, a = tables(tmp_path / "a" / "sub" / "train")
    _, b = tables(tmp_path / "b" / "sub" / "train")
    _, c = tables(tmp_path / "c" / "sub" / "train")
    assert a == b  # a pure function of manifest, seed and shard size
    assert [t["keys"] for t in a] != [t["keys"] for t in c]
    # every shard starts a round: one file of each speaker with files left, in random order
    left = dict(SPEAKERS)
    for table in a:
        speakers = [k[:7] for k in table["keys"]]
        live = [s for s in left if left[s]]
        if len(speakers) >= len(live):
            assert sorted(speakers[:len(live)]) == sorted(live)
        else:
            assert len(set(speakers)) == len(speakers)
        for s in speakers:
            left[s] -= 1
    first_rounds = {tuple(k[:7] for k in t["keys"][:3]) for t in a + c if len(t["keys"]) >= 3}
    assert len(first_rounds) > 1  # the round order is random


def test_interrupted_write_resumes_and_leaves_nothing_half_written(manifests, tmp_path,
                                                                   monkeypatch):
    ref, out = tmp_path / "ref", tmp_path / "out"
    writer.write_shards(manifests, ref, ["sub"], [], shard_size=5)
    real, calls = writer.write_shard, []

    def crash_on_third(path, rows, bar):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. the job is killed while writing shard 3
        return real(path, rows, bar)

    monkeypatch.setattr(writer, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        writer.write_shards(manifests, out, ["sub"], [], shard_size=5)
    folder = out / "sub" / "train"
    assert not (folder / "index.json").exists()  # the split is not marked done
    assert sorted(p.name for p in folder.iterdir()) == [
        "train-000000.idx.json", "train-000000.tar", "train-000001.idx.json",
        "train-000001.tar"]  # finished shards only, no temporaries
    done = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    calls.clear()
    monkeypatch.setattr(writer, "write_shard", lambda *a: calls.append(a[0].name) or real(*a))
    writer.write_shards(manifests, out, ["sub"], [], shard_size=5)
    assert calls[:2] == ["train-000002.tar", "train-000003.tar"]  # only what was missing
    assert all(folder.joinpath(n).stat().st_mtime_ns == t for n, t in done.items())
    for name in ("index.json", *(f"train-00000{i}.tar" for i in range(4))):
        assert sha(folder / name) == sha(ref / "sub" / "train" / name), name
    calls.clear()  # done: nothing is written again; another shard size redoes the split
    writer.write_shards(manifests, out, ["sub"], [], shard_size=5)
    assert calls == []
    writer.write_shards(manifests, out, ["sub"], [], shard_size=8)
    assert sorted(p.name for p in folder.glob("*.tar")) == ["train-000000.tar",
                                                            "train-000001.tar"]
    assert shard_data.read_index(folder)["params"]["shard_size"] == 8


def test_shard_audio_reads_what_the_files_hold(manifests, tmp_path):
    write(manifests, tmp_path / "S")
    audio = shard_data.ShardAudio([tmp_path / "S" / "sub" / "train", tmp_path / "S" / "test"])
    for csv in (manifests / "sub" / "train.csv", manifests / "test" / "original.csv"):
        for wav in pd.read_csv(csv).wav:
            assert torch.equal(audio.read_segment(wav, 1000, 3000),
                               read_segment(wav, 1000, 3000))
            assert torch.equal(audio.read_segment(wav, 0, 10**6),
                               read_segment(wav, 0, 10**6))
            assert torch.equal(audio.load_audio(wav), load_audio(wav))
    audio.check_covers(manifests / "sub" / "train.csv")
    train = pd.read_csv(manifests / "sub" / "train.csv")
    train.loc[0, "wav"] = "/elsewhere/x.wav"
    write_manifest(tmp_path / "train.csv", train)
    with pytest.raises(ListError, match="1 of its 16 files are missing"):
        audio.check_covers(tmp_path / "train.csv")
    with pytest.raises(ListError, match="1 other files are in"):
        audio.check_covers(tmp_path / "train.csv", exactly=tmp_path / "S" / "sub" / "train")
    with pytest.raises(ListError, match="prepare.shards"):
        shard_data.ShardAudio([tmp_path / "S" / "other" / "train"])


def sampler(epoch_ends, rank=0, world_size=1, items_per_pass=None, seed=3):
    shards = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15), np.arange(15, 16)]
    return shard_data.ShardOrderSampler(16, epoch_ends, seed, items_per_pass, rank, world_size,
                                        shards=shards, buffer=4)


def draws(s, epochs):
    out = []
    for e in epochs:
        s.set_epoch(e)
        out += list(s)
    return out


def test_shard_order_is_a_seeded_function_of_the_pass():
    s = sampler([16, 32, 48])
    passes = [[i for i, _ in draws(s, [e])] for e in (1, 2, 3)]
    for p in passes:
        assert sorted(p) == list(range(16))  # each pass: every item once
    assert len({tuple(p) for p in passes}) == 3  # a new order every pass
    assert [i for i, _ in draws(sampler([16, 32, 48]), [1, 2, 3])] == sum(passes, [])
    assert [i for i, _ in draws(sampler([16], seed=4), [1])] != passes[0]
    # shards are read one after the other, their items shuffled within windows of 4 (the
    # buffer): a shard's n items lie within n + 2 * 3 consecutive draws
    shard_of = np.repeat([0, 1, 2, 3], [5, 5, 5, 1])
    for p in passes:
        for k, n in enumerate([5, 5, 5, 1]):
            where = np.flatnonzero(shard_of[p] == k)
            assert where.max() - where.min() + 1 <= n + 6
        assert any(list(np.sort(p[w:w + 4])) != list(p[w:w + 4]) for w in range(0, 16, 4))


def test_ranks_split_every_epoch_without_duplicates_or_gaps():
    ends = [6, 14, 20, 40]  # epochs span passes, with items_per_pass > items (topped up)
    single = draws(sampler(ends, items_per_pass=20), [1, 2, 3, 4])
    assert [d for _, d in single] == list(range(40))
    both = sorted(draws(sampler(ends, 0, 2, 20), [1, 2, 3, 4])
                  + draws(sampler(ends, 1, 2, 20), [1, 2, 3, 4]), key=lambda x: x[1])
    assert both == single
    # a pass of 20 draws over 16 items: the last 4 repeat the pass's first 4
    assert [i for i, _ in single[16:20]] == [i for i, _ in single[:4]]


def test_staging_copies_skips_and_replaces_a_stale_copy(manifests, tmp_path):
    write(manifests, tmp_path / "S")
    dest = tmp_path / "local"
    stage(tmp_path / "S", "sub", dest)
    for split in ("sub/train", "sub/val", "test"):
        src, dst = tmp_path / "S" / split, dest / split
        assert sorted(p.name for p in src.iterdir()) == sorted(p.name for p in dst.iterdir())
        assert all(sha(p) == sha(dst / p.name) for p in src.iterdir())
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.tar")}
    stage(tmp_path / "S", "sub", dest, verify=True)  # there already: not copied again
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.tar")} == before
    broken = dest / "sub" / "train" / "train-000001.tar"  # a cut copy is replaced
    broken.write_bytes(broken.read_bytes()[:100])
    stage(tmp_path / "S", "sub", dest)
    assert sha(broken) == sha(tmp_path / "S" / "sub" / "train" / broken.name)
    os.truncate(broken, broken.stat().st_size)  # same size, other bytes: only --verify sees it
    with open(broken, "r+b") as f:
        f.seek(2000)
        f.write(b"x")
    stage(tmp_path / "S", "sub", dest)
    assert sha(broken) != sha(tmp_path / "S" / "sub" / "train" / broken.name)
    stage(tmp_path / "S", "sub", dest, verify=True)
    assert sha(broken) == sha(tmp_path / "S" / "sub" / "train" / broken.name)


def test_shard_datasets_hold_the_file_datasets_items_in_any_worker_split(manifests, tmp_path):
    from speechbrain.dataio.batch import PaddedBatch

    write(manifests, tmp_path / "S")
    hparams = {"data_format": "shards", "shard_folder": str(tmp_path / "S"), "subset": "sub",
               "train_csv": manifests / "sub" / "train.csv", "crop_seconds": 0.25, "seed": 5,
               "valid_csv": manifests / "sub" / "val.csv", "sample_rate": 16000,
               "evaluate_after_training": True, "manifest_folder": manifests,
               "test_sets": "original"}
    encoder = loading.speaker_encoder(hparams["train_csv"], tmp_path / "labels.txt")
    train, valid, sampler_class = shard_data.datasets(hparams, encoder, normalise=False)
    files = loading.train_dataset(hparams["train_csv"], encoder, 0.25, 5)
    # the same item, crop and label for every (index, draw): only where the bytes come from
    # differs, so shards and files train on the same distribution of crops
    for index in range(len(files)):
        for draw in (0, 7, 1234):
            a, b = train[(index, draw)], files[(index, draw)]
            assert a["id"] == b["id"] and torch.equal(a["spk_id_encoded"], b["spk_id_encoded"])
            assert torch.equal(a["sig"], b["sig"])
    from lowres.data.augment import from_hparams  # augmented crops: the same from shards

    augment = from_hparams({"speed_perturb": True, "speeds": [90, 110]})
    shard_aug, *_ = shard_data.datasets(hparams, encoder, normalise=False, augment=augment)
    file_aug = loading.train_dataset(hparams["train_csv"], encoder, 0.25, 5, augment=augment)
    assert all(torch.equal(shard_aug[(i, d)]["sig"], file_aug[(i, d)]["sig"])
               for i in range(len(file_aug)) for d in (3, 8))
    noise = tmp_path / "noise.wav"  # augment_side device: the same crops and draws
    sf.write(noise, np.random.default_rng(0).uniform(-0.1, 0.1, 8000), 16000)
    pd.DataFrame([{"ID": "n", "duration": 0.5, "wav": str(noise)}]).to_csv(
        tmp_path / "noise.csv", index=False)
    augment = from_hparams({"augment_noise": True, "noise_csv": str(tmp_path / "noise.csv"),
                            "augment_prob": 1.0, "augment_min": 1, "augment_max": 1,
                            "noise_snr_low": 0, "noise_snr_high": 5, "augment_side": "device"})
    shard_aug, *_ = shard_data.datasets(hparams, encoder, normalise=False, augment=augment)
    file_aug = loading.train_dataset(hparams["train_csv"], encoder, 0.25, 5, augment=augment)
    assert all(torch.equal(shard_aug[(i, d)][k], file_aug[(i, d)][k])
               for i in range(len(file_aug)) for d in (3, 8) for k in ("sig", "augment_noise"))
    file_valid = loading.valid_dataset(hparams["valid_csv"], encoder, 0.25)
    assert all(torch.equal(valid[i]["sig"], file_valid[i]["sig"]) for i in range(len(valid)))

    def batches(num_workers):
        s = sampler_class(len(train), [12, 32], 5, rank=0, world_size=1)
        loader = torch.utils.data.DataLoader(train, sampler=s, batch_size=4, collate_fn=PaddedBatch,
                                             num_workers=num_workers)
        out = []
        for epoch in (1, 2):
            s.set_epoch(epoch)
            out += [(b.id, b.sig.data) for b in loader]
        return out

    one, two = batches(0), batches(2)
    assert [ids for ids, _ in one] == [ids for ids, _ in two]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(one, two, strict=True))
    assert sorted(i for ids, _ in one[:4] for i in ids) == sorted(files.data_ids)  # a pass


def test_training_needs_matching_shards(manifests, tmp_path):
    from lowres.io.hparams import HparamsError

    with pytest.raises(HparamsError, match="data_format"):
        shard_data.check_hparams({"data_format": "tar"})
    with pytest.raises(HparamsError, match="shard_folder"):
        shard_data.check_hparams({"data_format": "shards", "shard_folder": None})
    writer.write_shards(manifests, tmp_path / "S", ["sub"], [], shard_size=5)
    hparams = {"data_format": "shards", "shard_folder": str(tmp_path / "S"), "subset": "sub",
               "train_csv": manifests / "sub" / "train.csv", "crop_seconds": 0.25, "seed": 5,
               "valid_csv": manifests / "sub" / "val.csv", "sample_rate": 16000,
               "evaluate_after_training": True, "manifest_folder": manifests,
               "test_sets": "original"}
    with pytest.raises(ListError, match="test/original.csv: 5 of its 5 files are missing"):
        shard_data.datasets(hparams, None, normalise=False)
    with pytest.raises(ListError, match="no complete shards in .*other/train"):
        shard_data.datasets({**hparams, "subset": "other"}, None, normalise=False)


def test_training_from_shards_says_so_in_the_log(manifests, tmp_path, caplog):
    """A run reading shards logs where from and how many shards: its log.txt shows which
    data format trained it."""
    write(manifests, tmp_path / "S")
    hparams = {"data_format": "shards", "shard_folder": str(tmp_path / "S"), "subset": "sub",
               "train_csv": manifests / "sub" / "train.csv", "crop_seconds": 0.25, "seed": 5,
               "valid_csv": manifests / "sub" / "val.csv", "sample_rate": 16000}
    encoder = loading.speaker_encoder(hparams["train_csv"], tmp_path / "labels.txt")
    with caplog.at_level("INFO", logger="lowres.data.shards"):
        shard_data.datasets(hparams, encoder, normalise=False)
    folder = tmp_path / "S" / "sub"
    assert (f"training data from WebDataset shards: 4 shards {folder}/train/train-*.tar (16 "
            f"utterances); validation: 1 shards {folder}/val/val-*.tar (4 utterances)"
            in caplog.text)


def test_shard_io_benchmark_prints_opens_and_rates(manifests, tmp_path, capsys):
    from conftest import load_script

    bench = load_script(ROOT / "benchmarks" / "shard_io.py", "shard_io")
    write(manifests, tmp_path / "S")
    bench.main(["--manifest", str(manifests / "sub" / "train.csv"), "--shards",
                str(tmp_path / "S" / "sub" / "train"), "--items", "32", "--batch", "4",
                "--crop_seconds", "0.25", "--open_delay_ms", "1"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and "items/s" not in line]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("local disk", "files"), ("local disk", "shards"), ("+1 ms per open", "files"),
        ("+1 ms per open", "shards")]
    opens = [float(r[2].replace(",", "")) for r in rows]
    assert opens[0] == opens[2] == 1000  # one open per item
    assert opens[1] == opens[3] == 1000 * 4 / 32  # each of the 4 shards once
