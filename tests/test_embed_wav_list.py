"""python -m lowres.embed on a hand-made run: bad files, 44.1 kHz stereo, wav.scp, npz / ark."""

import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_run import make_run

from lowres.io.lists import ListError
from lowres.scoring.batch_embedding import extract_embeddings
from lowres.scoring.embed_wav_list import main, read_wav_list
from lowres.scoring.speaker_verifier import SpeakerVerifier

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
K = 300  # sinusoids per test signal


def band_limited(sr, seed, seconds=1.5):
    """The same continuous signal (300 sinusoids below 7 kHz, 3 Hz envelope) sampled at sr."""
    rng = np.random.default_rng(seed)
    f, phase, amp = rng.uniform(60, 7000, K), rng.uniform(0, 2 * np.pi, K), rng.normal(size=K)
    t = np.arange(int(seconds * sr)) / sr
    tones = np.sin(2 * np.pi * f[:, None] * t[None] + phase[:, None]) * amp[:, None]
    return (0.3 / np.sqrt(K) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) * tones.sum(0)).astype(
        np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    sf.write(d / "mono16k.wav", band_limited(16000, 0), 16000, subtype="FLOAT")
    # The same signal at 44.1 kHz in two channels whose mean is that signal.
    x, other = band_limited(44100, 0), 0.5 * band_limited(44100, 1)
    sf.write(d / "stereo44k.wav", np.stack([x + other, x - other], 1), 44100, subtype="FLOAT")
    sf.write(d / "different.wav", band_limited(16000, 2), 16000, subtype="FLOAT")
    (d / "corrupt.wav").write_bytes(b"RIFF\x00\x01garbage" * 50)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000)
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run") / "run")


def test_list_with_bad_files_and_a_44k_stereo_file(files, run, tmp_path):
    good = [files / "mono16k.wav", files / "stereo44k.wav", files / "different.wav"]
    bad = [files / "corrupt.wav", files / "missing.wav", files / "empty.wav"]
    listed = [good[0], bad[0], good[1], bad[1], good[2], bad[2]]
    wav_list = tmp_path / "list.txt"
    wav_list.write_text("# recordings\n" + "".join(f"{p}\n" for p in listed) + "\n")
    out = tmp_path / "emb.npz"
    proc = subprocess.run([sys.executable, "-m", "lowres.embed", str(run), "--wav_list",
                           str(wav_list), "--out", str(out), "--noprogressbar"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # some failed, the rest is written
    assert "3 of 6 recordings embedded (16-dim)" in proc.stdout
    assert "3 could not be read" in proc.stderr and str(bad[1]) in proc.stderr

    data = np.load(out)
    assert data["ids"].tolist() == [str(p) for p in good]  # list order, ids = paths
    emb = data["embeddings"]
    assert emb.dtype == np.float32 and emb.shape == (3, 16)
    failed = [line.split("\t") for line in (tmp_path / "emb.failed.txt").read_text().splitlines()]
    assert [f[0] for f in failed] == [str(p) for p in bad]
    assert "Error opening" in failed[0][2] or "cannot read" in failed[0][2]
    assert "not found" in failed[1][2] and "empty" in failed[2][2]

    # Batched embeddings are those of one file at a time.
    v = SpeakerVerifier.from_run(run)
    single = torch.stack([v.embed(p) for p in good]).numpy()
    np.testing.assert_allclose(emb, single, atol=1e-5)
    # 44.1 kHz stereo -> mono 16 kHz.  Resampling is not exact (torchaudio's windowed sinc
    # attenuates the top of the band: 4.6 % waveform error on this signal), so the tolerance
    # is relative to how far apart two different recordings are: measured 0.01-0.02 for
    # three weight seeds, allowed 0.1; skipping the resampling gives >= 1.0 and skipping the
    # downmix (left channel only) >= 0.63.
    apart = np.linalg.norm(emb[0] - emb[2])
    assert np.linalg.norm(emb[1] - emb[0]) < 0.1 * apart
    stereo, sr = sf.read(files / "stereo44k.wav", dtype="float32")
    left = v.embed(torch.from_numpy(stereo[:, 0]), sample_rate=sr).numpy()
    not_resampled = v.embed(torch.from_numpy(stereo.mean(1))).numpy()
    assert np.linalg.norm(left - emb[0]) > 0.3 * apart
    assert np.linalg.norm(not_resampled - emb[0]) > 0.3 * apart


def test_wav_scp_to_kaldi_ark(files, run, tmp_path, monkeypatch, capsys):
    spaced = tmp_path / "a file with spaces.wav"
    spaced.write_bytes((files / "different.wav").read_bytes())
    monkeypatch.chdir(files)  # wav.scp paths relative to the current folder, as in Kaldi
    scp_in = tmp_path / "wav.scp"
    scp_in.write_text(f"utt-a mono16k.wav\nutt-b {spaced}\nutt-c stereo44k.wav\n"
                      "utt-d sox x.flac -t wav - |\nutt-e mono16k.wav\n")
    out = tmp_path / "out" / "xvectors.ark"
    assert main([str(run), "--wav_list", str(scp_in), "--out", str(out),
                 "--noprogressbar", "--batch_size", "2"]) == 1
    assert "pipe commands are not supported" in capsys.readouterr().err
    vectors = kaldiio.load_scp(str(out.with_suffix(".scp")))
    assert list(vectors) == ["utt-a", "utt-b", "utt-c", "utt-e"]
    # The same embeddings as the npz output, and a file named twice gets both ids.
    npz = tmp_path / "out" / "xvectors.npz"
    assert main([str(run), "--wav_list", str(scp_in), "--out", str(npz),
                 "--noprogressbar"]) == 1
    data = np.load(npz)
    assert data["ids"].tolist() == list(vectors)
    for utt, row in zip(data["ids"], data["embeddings"], strict=True):
        np.testing.assert_allclose(vectors[utt], row, atol=1e-6)
    np.testing.assert_array_equal(vectors["utt-a"], vectors["utt-e"])
    assert (tmp_path / "out" / "xvectors.failed.txt").read_text().startswith("utt-d\tsox")
    # All readable: exit 0 and an empty failure file (not a stale one).
    scp_in.write_text("utt-a mono16k.wav\n")
    assert main([str(run), "--wav_list", str(scp_in), "--out", str(npz),
                 "--noprogressbar"]) == 0
    assert (tmp_path / "out" / "xvectors.failed.txt").read_text() == ""


def test_extract_embeddings_reports_unreadable_files(files, run):
    v = SpeakerVerifier.from_run(run)
    paths = [files / "empty.wav", files / "mono16k.wav", files / "missing.wav"]
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        extract_embeddings(v.embedder, paths, progress=False)
    failures = {}
    emb = extract_embeddings(v.embedder, paths, progress=False, failures=failures)
    assert sorted(failures) == sorted(str(p) for p in (paths[0], paths[2]))
    assert torch.isnan(emb[[0, 2]]).all() and not torch.isnan(emb[1]).any()
    nothing = extract_embeddings(v.embedder, paths[::2], progress=False, failures={})
    assert nothing.shape == (2, 0)


def test_read_wav_list(tmp_path):
    f = tmp_path / "list"
    f.write_text("a.wav\n\n# comment\nsub dir/b.wav\n")
    assert read_wav_list(f) == [("a.wav", "a.wav"), ("sub dir/b.wav", "sub dir/b.wav")]
    f.write_text("u1 a.wav\nu2  sub dir/b.wav \n")
    assert read_wav_list(f) == [("u1", "a.wav"), ("u2", "sub dir/b.wav")]
    f.write_text("u1 a.wav\nu1 b.wav\n")
    with pytest.raises(ListError, match="'u1' appears more than once"):
        read_wav_list(f)
    f.write_text("# nothing\n")
    with pytest.raises(ListError, match="no entries"):
        read_wav_list(f)


def test_bad_arguments_exit_2(files, run, tmp_path, capsys):
    wav_list = tmp_path / "list.txt"
    wav_list.write_text(f"{files / 'mono16k.wav'}\n")
    assert main([str(tmp_path / "nope"), "--wav_list", str(wav_list),
                 "--out", str(tmp_path / "e.npz")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main([str(run), "--wav_list", str(tmp_path / "none.txt"),
                 "--out", str(tmp_path / "e.npz")]) == 2
    assert "cannot read the wav list" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--wav_list", str(wav_list), "--out", str(tmp_path / "e.txt")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "e.npz").exists()
