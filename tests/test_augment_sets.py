"""The augmentation collections: the synthetic stand-ins in the real layouts of MUSAN and
RIRS_NOISES (python -m prepare.synthetic --augment_sets), their preparation into
SpeechBrain CSVs (python -m prepare.augment_sets), and its errors for a wrong folder."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import ROOT, run_module

from prepare.augment_sets import prepare_augment_sets
from prepare.errors import USER_ERRORS
from prepare.synthetic import corpus as synthetic
from prepare.synthetic.augment_sets import generate_augment_sets


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The stand-in collections, through ``python -m prepare.synthetic --augment_sets``
    (the corpus itself stubbed out: its generation is tested in test_synthetic.py)."""
    out = tmp_path_factory.mktemp("corpus")
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "generate", lambda out, *args: calls.append(out) or {})
        synthetic.main(["--out", str(out), "--seed", "0", "--augment_sets"])
    assert calls == [out]
    return out


def test_stand_ins_have_the_real_layouts_and_say_synthetic(corpus):
    musan, rirs = corpus / "musan", corpus / "RIRS_NOISES"
    for kind, sources in (("noise", {"free-sound", "sound-bible"}),
                          ("music", {"fma", "jamendo"}), ("speech", {"librivox", "us-gov"})):
        assert {p.name for p in (musan / kind).iterdir()} == sources
        for wav in (musan / kind).glob("*/*.wav"):
            assert wav.name.startswith(f"{kind}-{wav.parent.name}-")
    for room in ("smallroom", "mediumroom", "largeroom"):
        listed = [line.split()[-1] for line in
                  (rirs / "simulated_rirs" / room / "rir_list").read_text().splitlines()]
        assert listed and all(p.startswith(f"RIRS_NOISES/simulated_rirs/{room}/Room")
                              for p in listed)
        assert all((corpus / p).is_file() for p in listed)
    for listing in ("real_rirs_isotropic_noises/rir_list", "real_rirs_isotropic_noises/noise_list",
                    "pointsource_noises/noise_list"):
        assert (rirs / listing).is_file()
    for folder in (musan, rirs):
        assert "SYNTHETIC" in (folder / "README.txt").read_text()


def test_stand_ins_are_deterministic_and_resumable(corpus, tmp_path):
    def hashes(folder):
        return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    assert generate_augment_sets(corpus, seed=0)["augment_files_written"] == 0
    (corpus / "musan" / "noise" / "free-sound" / "noise-free-sound-0001.wav").unlink()
    assert generate_augment_sets(corpus, seed=0)["augment_files_written"] == 1
    generate_augment_sets(tmp_path, seed=0)
    assert hashes(tmp_path / "musan") == hashes(corpus / "musan")
    assert hashes(tmp_path / "RIRS_NOISES") == hashes(corpus / "RIRS_NOISES")
    with pytest.raises(SystemExit, match="other options"):
        generate_augment_sets(tmp_path, seed=1)


def test_prepare_writes_speechbrain_csvs_with_durations(corpus, tmp_path):
    proc = run_module("prepare.augment_sets", "--musan", corpus / "musan",
                      "--rirs", corpus / "RIRS_NOISES", "--save_folder", tmp_path,
                      "--rir_sets", "smallroom,real")
    assert "SYNTHETIC" in proc.stdout
    for kind in ("noise", "music", "speech"):
        df = pd.read_csv(tmp_path / f"musan_{kind}.csv", keep_default_na=False)
        assert list(df.columns) == ["ID", "duration", "wav", "wav_format", "wav_opts"]
        assert sorted(df.ID) == sorted(p.relative_to(corpus / "musan").with_suffix("")
                                       .as_posix()
                                       for p in (corpus / "musan" / kind).glob("*/*.wav"))
        for row in df.itertuples():
            assert row.duration == pytest.approx(sf.info(row.wav).duration, abs=1e-6)
    rirs = pd.read_csv(tmp_path / "rirs.csv", keep_default_na=False)
    real = corpus / "RIRS_NOISES" / "real_rirs_isotropic_noises"
    expected = [line.split()[-1].removeprefix("RIRS_NOISES/").removesuffix(".wav")
                for name in ("simulated_rirs/smallroom", "real_rirs_isotropic_noises")
                for line in (corpus / "RIRS_NOISES" / name / "rir_list").read_text().split("\n")
                if line]
    assert list(rirs.ID) == expected  # only the listed responses, not the noises beside them
    assert any(sf.info(w).channels == 2 for w in rirs.wav)  # kept: used by its first channel
    assert not any("noise" in Path(i).name for i in rirs.ID) and any(real.glob("*noise*.wav"))


def test_wrong_folders_are_clear_errors(corpus, tmp_path):
    def error(**kwargs) -> str:
        with pytest.raises(USER_ERRORS) as err:
            prepare_augment_sets(tmp_path / "out", **kwargs)
        return str(err.value)

    assert "did you mean" in error(musan=corpus) and str(corpus / "musan") in error(musan=corpus)
    assert "did you mean" in error(rirs=corpus)
    assert "not found" in error(musan=tmp_path / "nowhere")
    assert "nothing to prepare" in error()
    assert "unknown RIR set" in error(rirs=corpus / "RIRS_NOISES", rir_sets=["hall"])

    flat = tmp_path / "flat"  # wav files not in <kind>/<source>/
    shutil.copytree(corpus / "musan", flat)
    for wav in (flat / "music").glob("*/*.wav"):
        wav.rename(flat / "music" / wav.name)
    assert "music/<source>/*.wav" in error(musan=flat) and "not one folder deep" in error(
        musan=flat)
    shutil.rmtree(flat / "speech")
    assert "no speech subfolder" in error(musan=flat)

    rirs = tmp_path / "RIRS_NOISES"
    shutil.copytree(corpus / "RIRS_NOISES", rirs)
    (rirs / "simulated_rirs" / "largeroom" / "rir_list").unlink()
    assert "largeroom/rir_list not found" in error(rirs=rirs)
    next((rirs / "simulated_rirs" / "smallroom").glob("*/*.wav")).unlink()
    assert "names 1 missing file" in error(rirs=rirs, rir_sets=["smallroom"])
    (rirs / "real_rirs_isotropic_noises" / "rir_list").write_text("a b c\n")
    assert "malformed rir_list" in error(rirs=rirs, rir_sets=["real"])
    wav = next((corpus / "musan" / "noise").glob("*/*.wav"))
    bad = tmp_path / "rate"
    shutil.copytree(corpus / "musan", bad)
    sf.write(bad / wav.relative_to(corpus / "musan"), np.zeros(800), 8000)
    assert "sample rate 8000" in error(musan=bad)
    assert not (tmp_path / "out").exists()  # nothing written on an error


def test_cli_error_exit_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prepare.augment_sets", "--musan",
                           str(tmp_path), "--save_folder", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") \
        and "not a MUSAN folder" in proc.stderr
