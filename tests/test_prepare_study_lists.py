"""python -m prepare.study_lists: the five published files, checked by sha256 (no network)."""

import shutil
import urllib.error

import pytest
from conftest import run_module
from fake_voxceleb import REFERENCE

from prepare import study_lists
from prepare.study_lists import SHA256, main, sha256_file

pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference not present")


def test_from_a_folder(tmp_path):
    out = tmp_path / "lists"
    proc = run_module("prepare.study_lists", "--out", out, "--from", REFERENCE)
    assert "5 file(s) written, 0 already there" in proc.stderr
    assert {p.name: sha256_file(p) for p in out.iterdir()} == SHA256
    (out / "val_trials.txt").write_text("1 a.wav b.wav\n")  # a damaged copy is replaced
    assert main(["--out", str(out), "--from", str(REFERENCE)]) == 0
    assert sha256_file(out / "val_trials.txt") == SHA256["val_trials.txt"]


def test_a_corrupted_file_is_refused_by_name(tmp_path, capsys):
    source = tmp_path / "copy"
    shutil.copytree(REFERENCE, source)
    bad = source / "tiny_many_high_utterance_list.csv"
    bad.write_bytes(bad.read_bytes().replace(b";train", b";val", 1))
    out = tmp_path / "lists"
    assert main(["--out", str(out), "--from", str(source)]) == 2
    err = capsys.readouterr().err
    assert f"error: refused, not the study's published file: {bad} (sha256 " in err
    assert sum(name in err for name in SHA256) == 1  # only the bad one is named
    assert not out.exists() or not list(out.iterdir())  # nothing written


def test_a_missing_file_is_named(tmp_path, capsys):
    source = tmp_path / "copy"
    shutil.copytree(REFERENCE, source)
    (source / "val_trials_tiny_few.txt").unlink()
    assert main(["--out", str(tmp_path / "lists"), "--from", str(source)]) == 2
    assert f"error: {source / 'val_trials_tiny_few.txt'} not found" in capsys.readouterr().err


def test_without_network_explains_how_to_place_them(tmp_path, capsys, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(study_lists.urllib.request, "urlopen", offline)
    out = tmp_path / "lists"
    assert main(["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot download https://raw.githubusercontent.com/nikvaessen/w2v2-speaker-few-" \
           "samples/405c8a0eced91abb88e76209933cb1d85266c4cd/meta/" in err
    assert f"Place these five files in {out} by hand" in err and "--from FOLDER" in err
    for name, digest in SHA256.items():
        assert f"{name}  sha256 {digest}" in err
    assert not out.exists() or not list(out.iterdir())
