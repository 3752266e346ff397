"""prepare.voxceleb end to end on a tiny fake VoxCeleb tree: outputs, exact reproduction
from a published-format list, resumability after an interruption, and every bad input."""

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf
from conftest import ROOT, run_module
from fake_voxceleb import make_tree, speaker_plan, write_wav

import prepare.voxceleb as vox
from prepare.voxceleb import main, prepare_voxceleb

OPTS = dict(few_speakers_per_gender=3, val_fraction=0.1, val_trials_tiny=40,
            val_trials_full=80, jobs=2)
ARGS = ["--few_speakers_per_gender", "3", "--val_fraction", "0.1", "--val_trials_tiny", "40",
        "--val_trials_full", "80", "--jobs", "2"]
SUBSETS = ["full", "tiny_few", "tiny_many_low", "tiny_many_high"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fakevox")
    make_tree(root)
    return root


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
    save = tmp_path_factory.mktemp("prepared")
    proc = run_module("prepare.voxceleb", "--data_folder", tree, "--save_folder", save, *ARGS)
    return save, proc


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".tmp-") or p.suffix == ".partial"]


def same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


# ---------------------------------------------------------------- outputs
def test_outputs(tree, prepared):
    save, _ = prepared
    listing = pd.read_csv(save / "listing.csv")
    for name in SUBSETS:
        train = pd.read_csv(save / name / "train.csv")
        val = pd.read_csv(save / name / "val.csv")
        assert list(train.columns[:6]) == ["ID", "duration", "wav", "spk_id", "session", "gender"]
        wav_root = str(tree / "voxceleb2/dev/wav")
        assert (train.wav == wav_root + "/" + train.ID + ".wav").all()
        assert set(train.gender) <= {"m", "f"} and (train.duration > 0).all()
        # session-disjoint, same speakers in val
        assert not set(train.spk_id + train.session) & set(val.spk_id + val.session)
        assert set(val.spk_id) == set(train.spk_id)
        trials = pd.read_csv(save / name / "val_trials.txt", sep=" ", header=None)
        assert set(trials[1].str[:-4]) | set(trials[2].str[:-4]) <= set(val.ID)
        stats = vox.manifests.read_json_stats(save / name / "stats.json")
        assert stats["train"]["files"] == len(train)
        assert stats["train"]["sessions"] == train.groupby(["spk_id", "session"]).ngroups
        assert stats["val"]["files"] == len(val)
        assert stats["val_trials"]["target"] == stats["val_trials"]["nontarget"]
        assert abs(stats["train"]["hours"] - train.duration.sum() / 3600) < 1e-3
    full = pd.read_csv(save / "full" / "train.csv")
    full_val = pd.read_csv(save / "full" / "val.csv")
    assert len(full) + len(full_val) == len(listing)
    assert len(pd.read_csv(save / "full" / "val_trials.txt", header=None)) == 80
    assert pd.read_csv(save / "tiny_few" / "train.csv").spk_id.nunique() == 6
    for t, src in vox.manifests.TEST_LISTS.items():
        assert filecmp.cmp(save / "test" / f"{t}_trials.txt", tree / "meta" / src, shallow=False)
        trials = pd.read_csv(tree / "meta" / src, sep=" ", header=None)
        m = pd.read_csv(save / "test" / f"{t}.csv")
        assert set(m.ID + ".wav") == set(trials[1]) | set(trials[2])
        assert set(m.gender) == {"m", "f"}
    assert not leftovers(save)


def test_rerun_skips_everything(tree, prepared):
    save, _ = prepared
    before = {p: p.stat().st_mtime_ns for p in save.rglob("*") if p.is_file()}
    proc = run_module("prepare.voxceleb", "--data_folder", tree, "--save_folder", save, *ARGS)
    assert proc.stderr.count("done already") == 7  # 4 subsets + 3 test sets (no m4a)
    assert "(cached)" in proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in save.rglob("*") if p.is_file()}


def mtimes(save: Path) -> dict[str, int]:
    return {n: (save / n / "stats.json").stat().st_mtime_ns for n in SUBSETS}


def test_changed_option_rebuilds_only_affected_subsets(tree, prepared, tmp_path):
    save = tmp_path / "m"
    shutil.copytree(prepared[0], save)
    before = mtimes(save)
    prepare_voxceleb(tree, save, **{**OPTS, "val_trials_tiny": 20})
    after = mtimes(save)
    # tiny_many_high validates on tiny_few's trials, tiny_many_low on full's
    assert [n for n in SUBSETS if after[n] != before[n]] == ["tiny_few", "tiny_many_high"]
    assert len((save / "tiny_few" / "val_trials.txt").read_text().splitlines()) == 20
    assert filecmp.cmp(save / "tiny_few" / "val_trials.txt",
                       save / "tiny_many_high" / "val_trials.txt", shallow=False)


# ---------------------------------------------------------------- which trials each subset gets
def trial_source(save: Path, name: str) -> dict:
    return vox.manifests.read_json_stats(save / name / "stats.json")["val_trials"]["source"]


def test_tiny_many_validate_on_the_trials_the_study_used(prepared):
    save, _ = prepared
    for name, owner in (("tiny_many_low", "full"), ("tiny_many_high", "tiny_few")):
        assert filecmp.cmp(save / owner / "val_trials.txt", save / name / "val_trials.txt",
                           shallow=False), name
        assert trial_source(save, name) == {**trial_source(save, owner), "shared_from": owner}
    assert "shared_from" not in trial_source(save, "full")
    assert trial_source(save, "tiny_few")["n_trials"] == 40


def test_own_trials_switch_rebuilds_only_tiny_many(tree, prepared, tmp_path, capsys):
    save = tmp_path / "m"
    shutil.copytree(prepared[0], save)
    before = mtimes(save)
    args = ["--data_folder", str(tree), "--save_folder", str(save), *ARGS, "--test_sets"]
    assert main([*args, "--no-val_trials_as_published"]) == 0, capsys.readouterr().err
    after = mtimes(save)
    assert [n for n in SUBSETS if after[n] != before[n]] == ["tiny_many_low", "tiny_many_high"]
    for name, owner in (("tiny_many_low", "full"), ("tiny_many_high", "tiny_few")):
        assert trial_source(save, name)["n_trials"] == 40
        assert "shared_from" not in trial_source(save, name)
        assert (save / name / "val_trials.txt").read_bytes() != \
            (save / owner / "val_trials.txt").read_bytes()
    trials = pd.read_csv(save / "tiny_many_high" / "val_trials.txt", sep=" ", header=None)
    few = set(pd.read_csv(save / "tiny_few" / "val.csv").spk_id)
    assert set(trials[1].str[:7]) - few  # other speakers than tiny_few's
    assert main(args) == 0  # back to the default: the study's mapping again
    for name in ("tiny_many_low", "tiny_many_high"):
        assert filecmp.cmp(prepared[0] / name / "val_trials.txt", save / name / "val_trials.txt",
                           shallow=False), name
    assert mtimes(save)["full"] == before["full"]


def check_with(save: Path, subset: str, options: dict) -> None:
    """train.py's check of existing manifests, with the shipped yaml and ``options``."""
    from test_train_hparams import HPARAMS

    from lowres.io.hparams import plain_values
    from lowres.training.manifests import prepare_manifests

    prepare_manifests(plain_values(HPARAMS / f"xvector_{subset}.yaml", {
        "data_folder": "/nonexistent", "manifest_folder": str(save),
        "prepare_options": options}))


def test_train_refuses_prepare_options_its_manifests_do_not_follow(prepared, tmp_path,
                                                                   caplog):
    from lowres.io.hparams import HparamsError

    save = tmp_path / "m"
    shutil.copytree(prepared[0], save)
    assert vox.recorded_options(save, "tiny_many_high")["val_trials_as_published"] is True
    check_with(save, "tiny_many_high", {"val_trials_as_published": True, "val_fraction": 0.1,
                                        "jobs": 1, "wav_stats": True})  # jobs: no content
    with pytest.raises(HparamsError, match="prepare_options=.*: val_trials_as_published="
                       "False, but the manifests in .*tiny_many_high were made with "
                       "val_trials_as_published=True"):
        check_with(save, "tiny_many_high", {"val_trials_as_published": False})
    with pytest.raises(HparamsError, match=r"study_lists='/.*/lists', but .* study_lists=None"):
        check_with(save, "tiny_few", {"study_lists": str(tmp_path / "lists")})
    (save / vox.OPTIONS_FILE).unlink()  # a folder prepared before the options were recorded
    with caplog.at_level("INFO"):
        check_with(save, "tiny_many_high", {"val_trials_as_published": False})
    assert "cannot be checked" in caplog.text


def test_shared_trials_without_their_subset(tree, prepared, tmp_path):
    out = tmp_path / "m"
    prepare_voxceleb(tree, out, subsets=["tiny_many_low", "tiny_many_high"], test_sets=(),
                     **OPTS)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name[0] != ".") == [
        "tiny_many_high", "tiny_many_low"]  # full and tiny_few are not written
    for name in ("tiny_many_low", "tiny_many_high"):
        assert filecmp.cmp(prepared[0] / name / "val_trials.txt", out / name / "val_trials.txt",
                           shallow=False), name


def test_shared_trials_must_name_the_subsets_validation_files(tree, tmp_path, monkeypatch):
    real = vox.select_tiny_many

    def without_a_tiny_few_speaker(train, *args):
        gone = vox.select_tiny_few(train, OPTS["few_speakers_per_gender"]).spk_id.iloc[0]
        return real(train[train.spk_id != gone], *args)

    monkeypatch.setattr(vox, "select_tiny_many", without_a_tiny_few_speaker)
    with pytest.raises(vox.PrepareError, match=r"the trials of tiny_few: trial names "
                       r"id\d+/.*which is not a validation file of tiny_many_high"):
        prepare_voxceleb(tree, tmp_path / "m", subsets="tiny_many_high", test_sets=(), **OPTS)
    assert not (tmp_path / "m" / "tiny_many_high").exists()


def test_shared_trials_of_an_empty_subset_fail_clearly(tree, tmp_path):
    with pytest.raises(vox.PrepareError, match="subset 'tiny_few, whose trials tiny_many_high "
                                               "validates on' is empty"):
        prepare_voxceleb(tree, tmp_path / "m", subsets="tiny_many_high", test_sets=(),
                         **{**OPTS, "few_speakers_per_gender": 0})


# ---------------------------------------------------------------- subset lists
def test_subset_list_reproduces_exactly(tree, prepared, tmp_path):
    save, _ = prepared
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("tiny_many_high", "tiny_few"):
        shutil.copy(save / name / f"{name}_utterance_list.csv", lists)
    # published trials beside a list are taken as they are; tiny_many_high takes
    # val_trials_tiny_few.txt, as the study's config did
    shutil.copy(save / "tiny_few" / "val_trials.txt", lists / "val_trials_tiny_few.txt")
    out = tmp_path / "out"
    prepare_voxceleb(tree, out, subset_lists=[lists / "tiny_many_high_utterance_list.csv",
                                              lists / "tiny_few_utterance_list.csv"],
                     test_sets=(), **{**OPTS, "seed": 99})  # other seed: the list decides
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "listing.csv", "listing.json", "prepare_options.json", "tiny_few", "tiny_many_high"]
    for name in ("tiny_many_high", "tiny_few"):
        for f in ("train.csv", "val.csv", f"{name}_utterance_list.csv"):
            assert filecmp.cmp(save / name / f, out / name / f, shallow=False), (name, f)
    for name in ("tiny_many_high", "tiny_few"):
        assert filecmp.cmp(save / "tiny_few" / "val_trials.txt", out / name / "val_trials.txt",
                           shallow=False), name


def test_subset_list_missing_key_fails_clearly(tree, prepared, tmp_path, capsys):
    save, _ = prepared
    bad = tmp_path / "mine_utterance_list.csv"
    text = (save / "tiny_few" / "tiny_few_utterance_list.csv").read_text()
    bad.write_text(text + "id00010/gone/00099;0;train\n")
    out = tmp_path / "out"
    rc = main(["--data_folder", str(tree), "--save_folder", str(out), "--subset_list", str(bad),
               "--test_sets", *ARGS])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error: 1 of" in err and "id00010/gone/00099" in err and str(bad) in err
    assert not (out / "mine").exists() and not leftovers(out)


# ---------------------------------------------------------------- bad inputs
def _break_missing_meta(root):
    (root / "meta" / "vox2_meta.csv").unlink()
    return "meta file not found: " + str(root / "meta" / "vox2_meta.csv")


def _break_malformed_meta(root):
    p = root / "meta" / "vox2_meta.csv"
    p.write_text(p.read_text() + "id00099 ,n9 ,unknown ,dev \n")
    return "gender 'unknown' is not m/f"


def _break_trial_file(root):
    p = root / "meta" / "veri_test2.txt"
    p.write_text(p.read_text() + "1 id10000/yt0/00001.wav id10000/nope/00042.wav\n")
    return f"{p}, line 13: trial names id10000/nope/00042.wav, which does not exist"


def _break_malformed_trial_list(root):
    p = root / "meta" / "list_test_hard2.txt"
    p.write_text(p.read_text() + "2 id10000/yt0/00001.wav\n")
    return f"malformed trial list {p}, line"


def _break_missing_trial_list(root):
    (root / "meta" / "list_test_all2.txt").unlink()
    return f"trial list not found: {root / 'meta' / 'list_test_all2.txt'}"


def _break_corrupt_wav(root):
    p = next((root / "voxceleb2/dev/wav").rglob("*.wav"))
    p.write_bytes(b"RIFF\x00\x00garbage" * 3)
    return f"{p}: unreadable audio"


def _break_sample_rate(root):
    p = sorted((root / "voxceleb2/dev/wav").rglob("*.wav"))[5]
    write_wav(p, 0.5, sr=8000)
    return f"{p}: sample rate 8000 Hz, expected 16000"


def _break_stereo(root):
    p = sorted((root / "voxceleb1/wav").rglob("*.wav"))[0]
    write_wav(p, 0.5, channels=2)
    return f"{p}: 2 channels, expected mono"


def _break_empty_subset(root):
    return "subset 'tiny_few' is empty"


def _break_unknown_speaker(root):
    write_wav(root / "voxceleb2/dev/wav/id00999/zz/00001.wav", 0.3)
    return "speaker(s) under"


BREAKS = {f.__name__[7:]: f for f in (_break_missing_meta, _break_malformed_meta,
                                        _break_trial_file, _break_malformed_trial_list,
                                        _break_missing_trial_list, _break_corrupt_wav,
                                        _break_sample_rate, _break_stereo, _break_empty_subset,
                                        _break_unknown_speaker)}


@pytest.mark.parametrize("case", list(BREAKS))
def test_bad_input(tree, tmp_path, capsys, case):
    root = tmp_path / "data"
    shutil.copytree(tree, root)
    expect = BREAKS[case](root)
    save = tmp_path / "m"
    args = ARGS + (["--few_speakers_per_gender", "0"] if case == "empty_subset" else [])
    rc = main(["--data_folder", str(root), "--save_folder", str(save), *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("error: ") == 1 and expect in err, err
    assert not leftovers(save)
    if case == "trial_file":  # training subsets were finished, VoxCeleb1-O never appears
        assert (save / "full" / "train.csv").exists()
        assert not list((save / "test").glob("original*"))
    if case in ("missing_trial_list", "missing_meta"):  # found before any work
        assert not (save / "listing.csv").exists()
    if case == "empty_subset":
        assert not (save / "tiny_few").exists() and (save / "full" / "stats.json").exists()


def test_bad_input_exit_status_from_cli(tree, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "prepare.voxceleb", "--data_folder", str(tmp_path / "nothing"),
         "--save_folder", str(tmp_path / "m")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: meta file not found")


def test_corrupt_m4a_names_file(tmp_path, capsys):
    plan = {k: v for k, v in list(speaker_plan().items())[:2]}
    make_tree(tmp_path, plan=plan, m4a=True)
    bad = sorted((tmp_path / "voxceleb2/dev/aac").rglob("*.m4a"))[1]
    bad.write_bytes(b"\x00\x01not an m4a" * 10)
    rc = main(["--data_folder", str(tmp_path), "--save_folder", str(tmp_path / "m"), *ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot convert {bad}" in err
    assert not leftovers(tmp_path)


def test_unknown_option():
    with pytest.raises(TypeError, match="bogus"):
        prepare_voxceleb("x", "y", bogus=1)


# ---------------------------------------------------------------- resumability
def test_stage_failure_then_rerun_equals_uninterrupted(tree, prepared, tmp_path, monkeypatch):
    save = tmp_path / "m"
    real = vox.make_val_trials

    def failing(val, n, seed, name):
        if name.startswith("tiny_many_low"):
            raise RuntimeError("simulated crash")
        return real(val, n, seed, name=name)

    monkeypatch.setattr(vox, "make_val_trials", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_voxceleb(tree, save, **OPTS)
    assert (save / "tiny_few" / "stats.json").exists()
    assert not (save / "tiny_many_low").exists() and not (save / "test").exists()
    assert not leftovers(save)
    monkeypatch.setattr(vox, "make_val_trials", real)
    done = (save / "full" / "train.csv").stat().st_mtime_ns
    prepare_voxceleb(tree, save, **OPTS)
    assert (save / "full" / "train.csv").stat().st_mtime_ns == done  # not redone
    shutil.rmtree(save / ".stages", ignore_errors=True)
    ref = tmp_path / "ref"
    shutil.copytree(prepared[0], ref)
    shutil.rmtree(ref / ".stages", ignore_errors=True)
    same_tree(save, ref)


def test_killed_conversion_resumes(tmp_path):
    plan = {f"id{i:05d}": {"gender": "mf"[i % 2],
                           "sessions": {"a": 2 + i % 2, "b": 1 + i % 3, "c": 1}}
            for i in range(8)}  # 40 files
    data = tmp_path / "data"
    make_tree(data, plan=plan, m4a=True)
    n_m4a = sum(1 for _ in (data / "voxceleb2/dev/aac").rglob("*.m4a"))
    ref_data = tmp_path / "ref_data"
    shutil.copytree(data, ref_data)
    wav_dir = data / "voxceleb2/dev/wav"
    cmd = [sys.executable, "-m", "prepare.voxceleb", "--data_folder", str(data),
           "--save_folder", str(tmp_path / "m"), *ARGS, "--jobs", "1", "--convert_batch", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and sum(1 for _ in wav_dir.rglob("*.wav")) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the python process and its ffmpeg child
    proc.wait()
    done = list(wav_dir.rglob("*.wav"))
    assert 3 <= len(done) < n_m4a, "kill landed outside the conversion"
    assert not (tmp_path / "m" / "listing.csv").exists()
    # every wav that exists is complete (all m4a are copies of one file)
    frames = {sf.info(p).frames for p in done}
    assert len(frames) == 1 and frames.pop() > 9000
    run_module("prepare.voxceleb", "--data_folder", data, "--save_folder", tmp_path / "m", *ARGS)
    assert not leftovers(data) and not leftovers(tmp_path / "m")
    assert sum(1 for _ in wav_dir.rglob("*.wav")) == n_m4a
    run_module("prepare.voxceleb", "--data_folder", ref_data, "--save_folder", tmp_path / "ref",
               *ARGS)
    for name in SUBSETS:
        for f in ("train.csv", "val.csv"):
            a = pd.read_csv(tmp_path / "m" / name / f).drop(columns="wav")
            b = pd.read_csv(tmp_path / "ref" / name / f).drop(columns="wav")
            pd.testing.assert_frame_equal(a, b)
        assert filecmp.cmp(tmp_path / "m" / name / "val_trials.txt",
                           tmp_path / "ref" / name / "val_trials.txt", shallow=False)


def test_api_accepts_names_as_strings(tree, tmp_path):
    out = tmp_path / "m"
    prepare_voxceleb(tree, out, subsets="tiny_few", test_sets="original", **OPTS)
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        == ["test", "tiny_few"]
    assert sorted(p.name for p in (out / "test").glob("*.csv")) == ["original.csv"]
    prepare_voxceleb(tree, out, subsets="tiny_few", test_sets="hard", **OPTS)
    assert sorted(p.name for p in (out / "test").glob("*.csv")) == ["hard.csv", "original.csv"]


def test_concurrent_runs_share_one_folder(tree, prepared, tmp_path):
    """Array jobs that all call the preparation on one folder: one works, the others skip."""
    save = tmp_path / "m"
    cmd = [sys.executable, "-m", "prepare.voxceleb", "--data_folder", str(tree),
           "--save_folder", str(save), *ARGS]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sum(err.count("done already") for _, err in outs) == 7
    for name in SUBSETS:
        assert filecmp.cmp(save / name / "train.csv", prepared[0] / name / "train.csv",
                           shallow=False)


def test_custom_budget_subset(tree, tmp_path):
    out = tmp_path / "m"
    prepare_voxceleb(tree, out, test_sets=(), **OPTS,
                     custom_subsets=["mine:speakers_per_gender=2,files_per_speaker=3,"
                                     "max_files_per_session=1"])
    train = pd.read_csv(out / "mine" / "train.csv")
    assert train.spk_id.nunique() == 4 and (train.groupby("spk_id").size() == 3).all()
    stats = vox.manifests.read_json_stats(out / "mine" / "stats.json")
    assert stats["rule"]["rule"] == "budget" and stats["train"]["files"] == 12
    assert stats["val_trials"]["source"]["n_trials"] == 40  # its own trials, always
    assert "shared_from" not in stats["val_trials"]["source"]
    with pytest.raises(vox.PrepareError, match="bad subset spec"):
        prepare_voxceleb(tree, out, custom_subsets=["mine:files=3"])


def test_batched_conversion_equals_one_file_per_ffmpeg(tmp_path):
    from prepare.convert import convert_voxceleb2

    plan = {"id00001": {"gender": "m", "sessions": {"a": 3, "b": 2}}}
    make_tree(tmp_path, plan=plan, m4a=True)
    # different content per file so a mixed-up mapping would show
    aac = tmp_path / "voxceleb2/dev/aac"
    for k, p in enumerate(sorted(aac.rglob("*.m4a"))):
        tone = f"sine=frequency={200 + 100 * k}:sample_rate=44100:duration={0.3 + 0.1 * k:.1f}"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        tone, "-c:a", "aac", str(p)], check=True)
    assert convert_voxceleb2(aac, tmp_path / "one", jobs=1, batch=1) == 5
    assert convert_voxceleb2(aac, tmp_path / "many", jobs=1, batch=8) == 5
    same_tree(tmp_path / "one", tmp_path / "many")
    assert len({sf.info(p).frames for p in (tmp_path / "many").rglob("*.wav")}) == 5
