"""The synthetic VoxCeleb-shaped corpus (prepare.synthetic.corpus)."""

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, load_script, run_module

from lowres.io.atomic import TMP_PREFIX
from prepare.synthetic import corpus as synthetic
from prepare.synthetic.channel import CODECS, Channel, apply_channel

TINY = dict(speakers=2, sessions=2, utterances=2, min_files=2,
            vox1_speakers=4, vox1_test=4, vox1_sessions=2, vox1_utterances=1,
            vox1_min_files=2, vox1_seconds=[3.0, 10.0])


def _load_baseline():
    return load_script(ROOT / "benchmarks" / "synthetic_baseline.py", "synthetic_baseline")


def _vox1_meta(corpus: Path) -> dict:
    with open(corpus / "meta" / "vox1_meta.csv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set"]
    return {r[0]: {"gender": r[2], "nationality": r[3], "set": r[4]} for r in rows[1:]}


def _vox2_meta(corpus: Path) -> dict:
    lines = (corpus / "meta" / "vox2_meta.csv").read_bytes().decode("utf-8").splitlines()
    assert lines[0] == "\ufeffVoxCeleb2 ID,VGGFace2 ID,Gender,Set"  # BOM, as the official file
    out = {}
    for line in lines[1:]:
        m = re.fullmatch(r"(id0\d{4}) ,(n\d{6}) ,([mf]) ,(dev|test) ", line)
        assert m, f"not in the official padded format: {line!r}"
        out[m[1]] = {"gender": m[3], "set": m[4]}
    return out


def _trials(corpus: Path, name: str) -> list[tuple[int, str, str]]:
    out = []
    for line in (corpus / "meta" / name).read_text().splitlines():
        label, a, b = line.split(" ")
        out.append((int(label), a, b))
    return out


def _hashes(folder: Path, pattern: str) -> dict:
    """sha256 of the corpus files matching `pattern` (hidden work files and folders left out)."""
    paths = [p for p in sorted(folder.rglob(pattern))
             if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in paths}


def test_layout_meta_and_formats(synthetic_corpus):
    corpus = synthetic_corpus
    assert "SYNTHETIC" in (corpus / "README.txt").read_text()
    vox2 = _vox2_meta(corpus)
    dev = {k for k, v in vox2.items() if v["set"] == "dev"}
    aac = corpus / "voxceleb2" / "dev" / "aac"
    assert {p.name for p in aac.iterdir()} == dev  # test-set rows are listed without audio
    assert sum(v["gender"] == "m" for k, v in vox2.items() if k in dev) >= 8
    assert sum(v["gender"] == "f" for k, v in vox2.items() if k in dev) >= 8
    m4as = sorted(aac.rglob("*.m4a"))
    assert all(re.fullmatch(r"id0\d{4}/[A-Za-z0-9_-]{11}/\d{5}\.m4a",
                            str(p.relative_to(aac))) for p in m4as)
    for path in m4as[:: max(1, len(m4as) // 5)]:
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels",
             "-of", "json", str(path)], capture_output=True, text=True, check=True)
        stream = json.loads(probe.stdout)["streams"][0]
        assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == \
            ("aac", "16000", 1)
    vox1 = _vox1_meta(corpus)
    assert len(vox1) >= 8 and {v["set"] for v in vox1.values()} == {"dev", "test"}
    wav_root = corpus / "voxceleb1" / "wav"
    assert {p.name for p in wav_root.iterdir()} == set(vox1)
    for path in wav_root.rglob("*.wav"):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 3.0 <= info.duration <= 10.0
    assert not list(corpus.rglob(TMP_PREFIX + "*"))


def test_trial_lists(synthetic_corpus):
    corpus = synthetic_corpus
    vox1 = _vox1_meta(corpus)
    wav_root = corpus / "voxceleb1" / "wav"
    all_files = {str(p.relative_to(wav_root)) for p in wav_root.rglob("*.wav")}
    lists = {name: _trials(corpus, name)
             for name in ("veri_test2.txt", "list_test_all2.txt", "list_test_hard2.txt")}
    for name, trials in lists.items():
        assert len(trials) >= 100, name
        n_target = sum(label for label, _, _ in trials)
        assert abs(2 * n_target - len(trials)) <= 0.1 * len(trials), f"{name} unbalanced"
        assert len({(a, b) for _, a, b in trials}) == len(trials), f"{name} has duplicates"
        for label, a, b in trials:
            assert a in all_files and b in all_files
            assert label == int(a.split("/")[0] == b.split("/")[0])
            if label:
                assert a.split("/")[1] != b.split("/")[1], "target pair within one session"
    test_speakers = {k for k, v in vox1.items() if v["set"] == "test"}
    o_speakers = {p.split("/")[0] for _, a, b in lists["veri_test2.txt"] for p in (a, b)}
    assert o_speakers == test_speakers
    e_speakers = {p.split("/")[0] for _, a, b in lists["list_test_all2.txt"] for p in (a, b)}
    assert e_speakers == set(vox1)
    for _, a, b in lists["list_test_hard2.txt"]:
        sa, sb = vox1[a.split("/")[0]], vox1[b.split("/")[0]]
        assert (sa["gender"], sa["nationality"]) == (sb["gender"], sb["nationality"])
    o_non = [(a, b) for label, a, b in lists["veri_test2.txt"] if not label]
    assert any(vox1[a[:7]]["gender"] != vox1[b[:7]]["gender"] for a, b in o_non)


def test_uneven_sessions_and_files(synthetic_corpus):
    aac = synthetic_corpus / "voxceleb2" / "dev" / "aac"
    sessions = {spk.name: [len(list(s.glob("*.m4a"))) for s in spk.iterdir()]
                for spk in aac.iterdir()}
    per_speaker = [len(v) for v in sessions.values()]
    per_session = [n for v in sessions.values() for n in v]
    assert min(per_speaker) >= 2 and max(per_speaker) >= 8 and len(set(per_speaker)) >= 3
    assert min(per_session) == 1 and len(set(per_session)) >= 3
    assert all(sum(v) >= 12 for v in sessions.values())  # enough for the 8-file subsets


def test_sessions_have_different_channels(synthetic_corpus):
    with open(synthetic_corpus / "meta" / "synthetic_sessions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[row["spk_id"]].append((row["rt60"], row["noise"], row["snr_db"],
                                          row["eq_peaks"], row["codec"]))
    for channels in by_speaker.values():
        assert len(set(channels)) == len(channels)
    assert len({row["codec"] for row in rows}) >= 3 and len({row["noise"] for row in rows}) >= 3


def test_speakers_are_distinct(synthetic_corpus):
    """Same-speaker MFCC statistics are closer than different-speaker ones, but not trivially."""
    baseline = _load_baseline()
    value, n_trials = baseline.baseline_eer(synthetic_corpus, "list_test_all2.txt")
    assert n_trials >= 100
    assert 0.02 < value < 0.45, f"baseline EER {value:.3f}"
    wav_root = synthetic_corpus / "voxceleb1" / "wav"
    files = sorted(wav_root.rglob("*.wav"))
    feats = np.stack([baseline.mean_std_mfcc(p) for p in files])
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    spk = np.array([p.relative_to(wav_root).parts[0] for p in files])
    dist = np.linalg.norm(feats[:, None] - feats[None], axis=-1)
    same = spk[:, None] == spk[None]
    off_diag = ~np.eye(len(files), dtype=bool)
    assert dist[same & off_diag].mean() < 0.85 * dist[~same].mean()


def test_deterministic_whatever_the_jobs(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    synthetic.generate(one, TINY, seed=3, jobs=1, progress=False)
    synthetic.generate(two, TINY, seed=3, jobs=2, progress=False)
    wavs = _hashes(one, "*.wav")
    assert len(wavs) >= 8 and wavs == _hashes(two, "*.wav")
    assert _hashes(one, "*.m4a") == _hashes(two, "*.m4a")
    assert _hashes(one / "meta", "*") == _hashes(two / "meta", "*")
    other = tmp_path / "other"
    synthetic.generate(other, TINY, seed=4, jobs=2, progress=False)
    assert set(_hashes(other, "*.wav").values()).isdisjoint(wavs.values())


def test_resume_skips_done_and_repairs_interrupted(tmp_path):
    out = tmp_path / "corpus"
    synthetic.generate(out, TINY, seed=5, jobs=1, progress=False)
    before = _hashes(out, "*.wav")
    wavs = sorted(out.rglob("*.wav"))
    victim, kept = wavs[0], wavs[-1]
    if victim.parent == kept.parent:
        kept = next(p for p in wavs if p.parent != victim.parent)
    victim.unlink()  # as if the run had died mid-session, leaving its temporaries
    (victim.parent / f"{TMP_PREFIX}{victim.name}.k1ll3d").write_bytes(b"truncated")
    (out / "meta" / f"{TMP_PREFIX}vox1_meta.csv.k1ll3d").write_bytes(b"trunc")
    kept_mtime = kept.stat().st_mtime_ns
    synthetic.generate(out, TINY, seed=5, jobs=1, progress=False)
    assert _hashes(out, "*.wav") == before
    assert kept.stat().st_mtime_ns == kept_mtime  # complete sessions are not redone
    assert not list(out.rglob(TMP_PREFIX + "*"))
    with pytest.raises(SystemExit, match="other options"):
        synthetic.generate(out, {**TINY, "speakers": 3}, seed=5, jobs=1, progress=False)


@pytest.mark.parametrize("codec", CODECS)
def test_channel_keeps_length_and_level(tmp_path, codec):
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    speech = (np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    channel = Channel(rt60=0.4, direct_to_reverb_db=3.0, noise="babble", snr_db=10.0,
                      eq_peaks=((1000.0, 6.0, 1.0),), tilt_db_per_octave=-2.0,
                      highpass_hz=100.0, lowpass_hz=3400.0, codec=codec, level_db=-6.0)
    out = apply_channel(speech, channel, rng, tmp_path)
    assert out.shape == speech.shape and np.isfinite(out).all()
    assert np.max(np.abs(out)) == pytest.approx(10 ** (-6 / 20), rel=1e-3)
    assert np.std(out) > 0.01


def test_test_part_file_lengths_leave_the_training_part_unchanged():
    """The default preset's VoxCeleb1-style files are 2-5 s (each evaluation embeds them
    all), the VoxCeleb2-style ones 3-10 s; the test part's lengths draw after the training
    part's, so changing them leaves every training speaker, session and length as it was."""
    sizes = synthetic.PRESETS["default"]
    plan = synthetic.make_plan(sizes, seed=0)
    lengths = {part: [d for s in plan if s.corpus == part for x in s.sessions
                      for d in x.durations] for part in ("vox1", "vox2")}
    assert 2.0 <= min(lengths["vox1"]) and max(lengths["vox1"]) <= 5.0
    assert 3.0 <= min(lengths["vox2"]) and max(lengths["vox2"]) <= 10.0
    assert max(lengths["vox2"]) > 5.0
    other = synthetic.make_plan({**sizes, "vox1_seconds": [3.0, 10.0]}, seed=0)
    assert [s for s in other if s.corpus == "vox2"] == [s for s in plan if s.corpus == "vox2"]
    assert ([s for s in other if s.corpus == "vox1"] != [s for s in plan if s.corpus == "vox1"])


def test_cli_large_preset_reduced(tmp_path):
    """The large preset's plan is sane at full size and generates at a reduced count."""
    plan = synthetic.make_plan(synthetic.PRESETS["large"], seed=0)
    vox2 = [s for s in plan if s.corpus == "vox2"]
    assert len(vox2) == 1000 and len({s.spk_id for s in vox2}) == 1000
    assert max(len(s.sessions) for s in vox2) >= 15
    out = tmp_path / "large"
    proc = run_module("prepare.synthetic", "--out", out, "--preset", "large", "--speakers", "2",
                      "--sessions", "2", "--utterances", "1", "--vox1_speakers", "2",
                      "--jobs", "2")
    assert "SYNTHETIC" in proc.stdout
    counts = json.loads((out / "README.txt").read_text().split("\n\n", 1)[1])
    assert counts["vox2_speakers"] == 2 and counts["vox1_speakers"] == 2
    assert len(list(out.rglob("*.m4a"))) == counts["vox2_files"] >= 2 * 16  # min_files 16


def test_killed_run_leaves_no_truncated_file_and_resumes(tmp_path):
    """SIGKILL mid-run: every file under its final name is complete; a rerun finishes it."""
    ref, out = tmp_path / "ref", tmp_path / "killed"
    sizes = {**TINY, "speakers": 3, "utterances": 3}
    synthetic.generate(ref, sizes, seed=7, jobs=1, progress=False)
    code = (f"from prepare import synthetic; synthetic.generate({str(out)!r}, {sizes!r}, "
            "seed=7, jobs=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    def started() -> bool:  # the generator adds and removes work folders meanwhile
        for _, _, names in os.walk(out):
            if any(name.endswith(".m4a") for name in names):
                return True
        return False

    deadline = time.time() + 60
    while not started() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # let an orphaned ffmpeg finish its temporary file
    finished = {**_hashes(out, "*.m4a"), **_hashes(out, "*.wav")}
    reference = {**_hashes(ref, "*.m4a"), **_hashes(ref, "*.wav")}
    assert len(finished) < len(reference), "the run ended before it could be killed"
    assert all(reference[k] == v for k, v in finished.items())
    synthetic.generate(out, sizes, seed=7, jobs=1, progress=False)
    assert {**_hashes(out, "*.m4a"), **_hashes(out, "*.wav")} == reference
    assert _hashes(out / "meta", "*") == _hashes(ref / "meta", "*")
    assert not list(out.rglob(TMP_PREFIX + "*"))  # the killed session's were removed


def test_unlabelled_speakers_are_new_voices_and_leave_the_corpus_alone(tmp_path):
    """--unlabelled_speakers: wavs of speakers who are none of the corpus's (their own
    voices), under OUT/unlabelled, without touching voxceleb1/2; a rerun with another
    count is refused instead of mixing two plans."""
    plain, out = tmp_path / "plain", tmp_path / "with"
    synthetic.generate(plain, TINY, seed=3, jobs=1, progress=False)
    synthetic.generate(out, TINY, seed=3, jobs=1, progress=False)
    counts = synthetic.generate_unlabelled(out, 2, seed=3, jobs=1, progress=False)
    assert counts["unlabelled_speakers"] == 2 and counts["unlabelled_files"] >= 8
    wavs = sorted((out / "unlabelled").rglob("*.wav"))
    assert len(wavs) == counts["unlabelled_files"]
    assert {p.relative_to(out / "unlabelled").parts[0] for p in wavs} == {"un00000", "un00001"}
    assert "SYNTHETIC" in (out / "unlabelled" / "README.txt").read_text()
    voices = {synthetic._voice(s, 3) for s in synthetic.make_plan(TINY, 3)}
    assert voices.isdisjoint(synthetic._voice(s, 3)
                             for s in synthetic.make_unlabelled_plan(2, 3))
    corpus = {k: v for k, v in _hashes(out, "*.wav").items() if "unlabelled" not in k}
    assert corpus == _hashes(plain, "*.wav")
    with pytest.raises(SystemExit, match="other options"):
        synthetic.generate_unlabelled(out, 3, seed=3, jobs=1, progress=False)
