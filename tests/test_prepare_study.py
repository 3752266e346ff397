"""--study_lists: the study's split, subsets and validation trials reproduced exactly.

The big check runs the subset stage on a listing built from every key of the published
lists in ../shared/reference plus files they do not name (no audio: ~165k rows); the
CLI path runs on a small real tree with lists in the published format (their checksums
stand in for the published ones).
"""

import shutil
import warnings

import pandas as pd
import pytest
from fake_voxceleb import REFERENCE, make_tree, plan_listing

import prepare.voxceleb as vox
from lowres.io import lists
from prepare import study_lists
from prepare.errors import PrepareError
from prepare.listing import COLUMNS, split_ids
from prepare.manifests import read_json_stats
from prepare.meta import gender_map
from prepare.subsets import read_subset_list, write_subset_list
from prepare.trials import make_val_trials

needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(),
                                     reason="shared/reference not present")
# docs/study.md, 'The three subsets' and 'Data in the published runs' (files, speakers, sessions)
# of the published lists.
PUBLISHED = {
    "tiny_few": {"train": (49400, 100, 4679), "val": (599, 100, 257)},
    "tiny_many_low": {"train": (47952, 5994, 6275), "val": (22717, 5994, 9057)},
    "tiny_many_high": {"train": (47952, 5994, 46820), "val": (22717, 5994, 9057)},
    "full": {"val": (22717, 5994, 9057)},
}
STUDY_TRIALS = {"full": "val_trials.txt", "tiny_few": "val_trials_tiny_few.txt",
                "tiny_many_low": "val_trials.txt", "tiny_many_high": "val_trials_tiny_few.txt"}


def options(**o) -> dict:
    return {**vox.DEFAULTS, **o}


def figures(split: dict) -> tuple[int, int, int]:
    return split["files"], split["speakers"], split["sessions"]


@needs_reference
def test_study_lists_reproduce_the_published_subsets(tmp_path):
    keys = {n: read_subset_list(REFERENCE / f"{n}_utterance_list.csv")
            for n in ("tiny_few", "tiny_many_low", "tiny_many_high")}
    named = pd.concat(k.ID for k in keys.values()).drop_duplicates()
    speakers = sorted(named.str[:7].unique())[:300]
    extra = pd.Series([f"{s}/notInAnyList/00001" for s in speakers])  # dev files no list names
    ids = pd.concat([named, extra], ignore_index=True)
    listing = split_ids(ids).assign(ID=ids, duration=1.0, wav="/x/" + ids + ".wav")
    listing["gender"] = listing.spk_id.map(gender_map(REFERENCE / "vox2_meta.csv"))
    listing = listing[COLUMNS]
    rules = vox.subset_rules(options(study_lists=REFERENCE))
    assert list(rules) == ["full", "tiny_few", "tiny_many_low", "tiny_many_high"]
    none = listing.iloc[:0]
    for name, rule in rules.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vox.write_subset(tmp_path / name, name, rule, listing, none, none, {}, 1337)
        if name == "full":  # fewer files than the authors' copy: reported, not an error
            assert any("fewer than the study's 1,068,871" in str(w.message) for w in caught)
    val_keys = set(keys["tiny_many_low"].ID[keys["tiny_many_low"].set_name == "val"])
    full_val = set(lists.read_manifest(tmp_path / "full" / "val.csv").ID)
    full_train = set(lists.read_manifest(tmp_path / "full" / "train.csv").ID)
    assert full_val == val_keys
    assert full_train == set(ids) - val_keys  # every other file, those in no list too
    for name, k in keys.items():
        for split in ("train", "val"):
            got = set(lists.read_manifest(tmp_path / name / f"{split}.csv").ID)
            assert got == set(k.ID[k.set_name == split]), (name, split)
    for name, published in PUBLISHED.items():
        stats = read_json_stats(tmp_path / name / "stats.json")
        for split, expect in published.items():
            assert figures(stats[split]) == expect, (name, split)
        trial_file = REFERENCE / STUDY_TRIALS[name]
        assert (tmp_path / name / "val_trials.txt").read_bytes() == trial_file.read_bytes()
        assert stats["val_trials"]["source"] == {
            "kind": "published", "file": str(trial_file.resolve()),
            "sha256": study_lists.SHA256[trial_file.name]}
    assert read_json_stats(tmp_path / "tiny_few" / "stats.json")["rule"]["list_sha256"] == \
        study_lists.SHA256["tiny_few_utterance_list.csv"]


@needs_reference
def test_study_lists_must_be_the_published_files(tmp_path):
    folder = tmp_path / "lists"
    shutil.copytree(REFERENCE, folder)
    (folder / "vox2_meta.csv").unlink()
    vox.subset_rules(options(study_lists=folder))  # the five files are all it needs
    bad = folder / "val_trials.txt"
    bad.write_text(bad.read_text().replace("0 ", "1 ", 1))
    with pytest.raises(PrepareError, match=f"not the study's published file: {bad} "):
        vox.subset_rules(options(study_lists=folder))
    (folder / "tiny_few_utterance_list.csv").unlink()
    with pytest.raises(PrepareError, match="lacks tiny_few_utterance_list.csv .*"
                                           "prepare.study_lists --out"):
        vox.subset_rules(options(study_lists=folder))


# ---------------------------------------------------------------- the CLI on a small tree
PLAN = {f"id{i:05d}": {"gender": "mf"[i % 2],
                       "sessions": {"a": 3, "b": 2, "v": 3, "x": 1 + i % 2}} for i in range(6)}
FEW = ("id00000", "id00001", "id00002", "id00003")


def write_study_folder(folder, listing, seed=0):
    """The five files in the published format, from a listing of the PLAN tree.

    Validation = session v; tiny_few = four speakers with all their a, b files;
    tiny_many_low = the a files; tiny_many_high = one a and one b file; session x is in
    no list (only in full/train).
    """
    val = listing[listing.session == "v"]
    few = listing.spk_id.isin(FEW)
    write_subset_list(folder / "tiny_few_utterance_list.csv",
                      listing[few & listing.session.isin(["a", "b"])], val[val.spk_id.isin(FEW)])
    write_subset_list(folder / "tiny_many_low_utterance_list.csv",
                      listing[listing.session == "a"], val)
    write_subset_list(folder / "tiny_many_high_utterance_list.csv",
                      listing[listing.session.isin(["a", "b"]) & (listing.utt == "00001")], val)
    lists.write_trials(folder / "val_trials.txt", make_val_trials(val, 20, seed))
    lists.write_trials(folder / "val_trials_tiny_few.txt",
                       make_val_trials(val[val.spk_id.isin(FEW)], 6, seed))
    return {name: study_lists.sha256_file(folder / name) for name in study_lists.SHA256}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("studytree")
    make_tree(root, plan=PLAN, vox1_speakers=2)
    return root


@pytest.fixture
def study_folder(tmp_path, monkeypatch):
    folder = tmp_path / "lists"
    folder.mkdir()
    listing = plan_listing(PLAN)
    monkeypatch.setattr(study_lists, "SHA256", write_study_folder(folder, listing))
    return folder, listing


def run(tree, save, folder, capsys, *extra):
    rc = vox.main(["--data_folder", str(tree), "--save_folder", str(save),
                   "--study_lists", str(folder), "--test_sets", *extra])
    return rc, capsys.readouterr().err


def test_cli_study_lists_on_a_small_tree(tree, study_folder, tmp_path, capsys, monkeypatch):
    folder, listing = study_folder
    n_train = int((listing.session != "v").sum())
    monkeypatch.setattr(study_lists, "STUDY_FULL_TRAIN_FILES", n_train - 1)
    save = tmp_path / "m"
    rc, err = run(tree, save, folder, capsys)
    assert rc == 0, err
    assert f"warning: full: {n_train} train files, 1 more than the study's" in err
    assert sorted(p.name for p in save.iterdir() if p.is_dir() and p.name[0] != ".") == \
        sorted(STUDY_TRIALS)
    full_train = lists.read_manifest(save / "full" / "train.csv")
    assert set(full_train.ID) == set(listing.ID[listing.session != "v"])
    for name in ("tiny_few", "tiny_many_low", "tiny_many_high"):
        k = read_subset_list(folder / f"{name}_utterance_list.csv")
        for split in ("train", "val"):
            got = lists.read_manifest(save / name / f"{split}.csv")
            assert set(got.ID) == set(k.ID[k.set_name == split]), (name, split)
    for name, trial_file in STUDY_TRIALS.items():
        assert (save / name / "val_trials.txt").read_bytes() == \
            (folder / trial_file).read_bytes(), name
        source = read_json_stats(save / name / "stats.json")["val_trials"]["source"]
        assert source["file"] == str((folder / trial_file).resolve())
    before = {p: p.stat().st_mtime_ns for p in save.rglob("*") if p.is_file()}
    assert run(tree, save, folder, capsys)[0] == 0
    assert before == {p: p.stat().st_mtime_ns for p in save.rglob("*") if p.is_file()}


def test_cli_missing_keys_fail_with_count_and_names(tree, study_folder, tmp_path, capsys,
                                                    monkeypatch):
    folder, listing = study_folder
    p = folder / "tiny_many_low_utterance_list.csv"
    gone = [f"id00003/gone/{u:05d}" for u in range(7)]
    p.write_text(p.read_text() + "".join(f"{k};0;train\n" for k in gone))
    monkeypatch.setitem(study_lists.SHA256, p.name, study_lists.sha256_file(p))
    rc, err = run(tree, tmp_path / "m", folder, capsys)
    assert rc == 2
    assert f"error: 7 of {len(read_subset_list(p))} keys in {p} are not in the data, e.g. " \
           + ", ".join(gone[:5]) in err
    assert not (tmp_path / "m" / "tiny_many_low").exists()


def test_cli_published_trials_must_name_validation_files(tree, study_folder, tmp_path, capsys,
                                                         monkeypatch):
    folder, _ = study_folder
    p = folder / "val_trials_tiny_few.txt"  # a validation file of another speaker than FEW
    p.write_text(p.read_text() + "0 id00000/v/00001.wav id00004/v/00001.wav\n")
    monkeypatch.setitem(study_lists.SHA256, p.name, study_lists.sha256_file(p))
    rc, err = run(tree, tmp_path / "m", folder, capsys)
    assert rc == 2
    assert f"error: {p}: trial names id00004/v/00001.wav, which is not a validation file " \
           "of tiny_few (1 such paths)" in err
    assert (tmp_path / "m" / "full" / "stats.json").exists()  # full has it in its val
    assert not (tmp_path / "m" / "tiny_few").exists()


def test_full_needs_the_same_val_keys_in_both_tiny_many_lists(study_folder, monkeypatch):
    folder, listing = study_folder
    val = listing[listing.session == "v"]
    p = folder / "tiny_many_high_utterance_list.csv"
    write_subset_list(p, listing[listing.session == "a"], val.iloc[1:])
    monkeypatch.setitem(study_lists.SHA256, p.name, study_lists.sha256_file(p))
    with pytest.raises(PrepareError, match="validation keys of .*tiny_many_high_utterance_list"
                                           ".csv differ from those of"):
        vox.build_subset(vox.study_rules(folder)["full"], listing, listing, listing, 0)


def test_study_lists_with_another_full_is_refused(study_folder):
    folder, _ = study_folder
    with pytest.raises(PrepareError, match="subset 'full' is asked for twice"):
        vox.subset_rules(options(study_lists=folder, subsets=("full",)))


def test_subset_list_takes_the_trials_the_study_used(study_folder):
    folder, _ = study_folder
    for name, trial_file in STUDY_TRIALS.items():
        if name != "full":
            rule = vox.list_rule(folder / f"{name}_utterance_list.csv", 10)
            assert rule["trials"] == str((folder / trial_file).resolve())
            assert "n_trials" not in rule
    other = folder / "mine_utterance_list.csv"
    shutil.copy(folder / "tiny_few_utterance_list.csv", other)
    assert vox.list_rule(other, 10) == {"rule": "list", "list": str(other.resolve()),
                                        "list_sha256": study_lists.sha256_file(other),
                                        "n_trials": 10}


def test_rule_made_subsets_share_the_trials_the_study_shared():
    for name, owner in vox.TRIALS_FROM.items():
        assert STUDY_TRIALS[name] == STUDY_TRIALS[owner] == study_lists.TRIALS[name]
    assert set(vox.TRIALS_FROM) | {"full", "tiny_few"} == set(STUDY_TRIALS)


def test_generated_trials_say_where_they_came_from(tree, tmp_path):
    generated = {"kind": "generated", "generator": "prepare.trials.make_val_trials/2",
                 "seed": 5, "n_trials": 6}
    o = dict(test_sets=(), few_speakers_per_gender=2, val_trials_tiny=6, seed=5)
    vox.prepare_voxceleb(tree, tmp_path / "m", subsets="tiny_few", **o)
    stats = read_json_stats(tmp_path / "m" / "tiny_few" / "stats.json")
    assert stats["val_trials"]["source"] == generated
    vox.prepare_voxceleb(tree, tmp_path / "m", subsets="tiny_many_high", **o)
    stats = read_json_stats(tmp_path / "m" / "tiny_many_high" / "stats.json")
    assert stats["val_trials"]["source"] == {**generated, "shared_from": "tiny_few"}
    assert stats["rule"]["trials_from"] == {"rule": "tiny_few", "n_trials": 6,
                                            "speakers_per_gender": 2}
    vox.prepare_voxceleb(tree, tmp_path / "m", subsets="tiny_many_high",
                         val_trials_as_published=False, **o)
    stats = read_json_stats(tmp_path / "m" / "tiny_many_high" / "stats.json")
    assert stats["val_trials"]["source"] == generated and "trials_from" not in stats["rule"]
