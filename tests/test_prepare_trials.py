"""Validation trials: balanced, same-gender non-targets with the study generator's
statistics (checked against the published lists), deterministic."""

import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from fake_voxceleb import REFERENCE, plan_listing, random_plan

from lowres.io import lists
from prepare.errors import PrepareWarning
from prepare.listing import split_ids
from prepare.meta import gender_map
from prepare.subsets import read_subset_list
from prepare.trials import make_val_trials


@pytest.fixture(scope="module")
def val():
    return plan_listing(random_plan(40, seed=5, max_sessions=2, max_files=8))


def spk(path):
    return path.split("/")[0]


def test_trials_balanced_same_gender_and_valid(val):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrepareWarning)
        t = make_val_trials(val, 600, seed=1)
    assert len(t) == 600 and (t.label == 1).sum() == 300
    gender = dict(zip(val.spk_id, val.gender, strict=False))
    ids = set(val.ID + ".wav")
    assert set(t.path1) | set(t.path2) <= ids
    assert (t.path1 != t.path2).all()
    for label, a, b in t.itertuples(index=False):
        if label == 1:
            assert spk(a) == spk(b)
        else:
            assert spk(a) != spk(b) and gender[spk(a)] == gender[spk(b)]
    pairs = {frozenset(p) for p in zip(t.path1, t.path2, strict=True)}
    assert len(pairs) == len(t), "a pair appears twice"
    assert set(t.label.iloc[:50]) == {0, 1}, "labels are interleaved, not blocked"


def test_trials_cycle_targets_over_speakers(val):
    t = make_val_trials(val, 600, seed=1)
    n_files = Counter(val.spk_id)
    # targets cycle over speakers: counts differ by at most one among speakers not exhausted
    tgt = Counter(spk(a) for a in t.path1[t.label == 1])
    capacity = {s: n * (n - 1) // 2 for s, n in n_files.items()}
    open_spk = [s for s in capacity if capacity[s] > tgt[s]]
    low = min(tgt[s] for s in open_spk)
    assert all(tgt[s] <= low + 1 for s in tgt)
    assert t.label.tolist() == [0, 1] * 300, "lines alternate non-target, target"


def test_nontarget_gender_share_is_the_rejection_samplings():
    """30 male, 10 female speakers: n(n-1) shares give 90.6 % male, not the 75 % of speakers."""
    plan = {f"id{i:05d}": {"gender": "m" if i < 30 else "f",
                           "sessions": {f"a{i}": 6, f"b{i}": 5}} for i in range(40)}
    val = plan_listing(plan)
    t = make_val_trials(val, 1600, seed=2)
    nt = t[t.label == 0]
    share_m = (nt.path1.map(spk).map(dict(zip(val.spk_id, val.gender, strict=True))) == "m").mean()
    assert abs(share_m - 30 * 29 / (30 * 29 + 10 * 9)) < 0.045, share_m  # binomial sd 0.015


def list_statistics(trials: pd.DataFrame, gender: dict) -> dict:
    """What the study's generator fixes or draws: see prepare/trials.py."""
    a, b = trials.path1.str.split("/"), trials.path2.str.split("/")
    tgt, nt = trials.label == 1, trials.label == 0
    use = Counter(a[nt].str[0]) + Counter(b[nt].str[0])
    return {
        "targets_per_speaker": sorted(Counter(Counter(a[tgt].str[0]).values()).items()),
        "same_session_targets": float((a[tgt].str[1] == b[tgt].str[1]).mean()),
        "male_nontargets": float((a[nt].str[0].map(gender) == "m").mean()),
        "nontarget_speakers": len(use),
        "nontarget_use_sd": float(np.std(list(use.values()))),
        "files": len(set(trials.path1) | set(trials.path2)),
    }


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference not present")
@pytest.mark.parametrize("subset, published, n, tol", [
    ("tiny_many_low", "val_trials.txt", 30000, 0.015),  # the full validation split
    ("tiny_few", "val_trials_tiny_few.txt", 2000, 0.07),
])
def test_generated_lists_have_the_published_statistics(subset, published, n, tol):
    """A list generated from the study's validation split against the study's own list."""
    gender = gender_map(REFERENCE / "vox2_meta.csv")
    keys = read_subset_list(REFERENCE / f"{subset}_utterance_list.csv")
    ids = keys.ID[keys.set_name == "val"].reset_index(drop=True)
    val = split_ids(ids).assign(ID=ids)
    val["gender"] = val.spk_id.map(gender)
    pub = list_statistics(lists.read_trials(REFERENCE / published), gender)
    got = list_statistics(make_val_trials(val, n, seed=1337), gender)
    assert got["targets_per_speaker"] == pub["targets_per_speaker"]  # the cycle fixes these
    assert abs(got["same_session_targets"] - pub["same_session_targets"]) < 0.03
    assert abs(got["male_nontargets"] - pub["male_nontargets"]) < tol
    assert abs(got["nontarget_use_sd"] / pub["nontarget_use_sd"] - 1) < 0.15
    for key in ("nontarget_speakers", "files"):
        assert abs(got[key] / pub[key] - 1) < 0.01, key


def test_trials_deterministic(val):
    a = make_val_trials(val, 200, seed=3)
    b = make_val_trials(val.sample(frac=1, random_state=1), 200, seed=3)
    c = make_val_trials(val, 200, seed=4)
    assert a.equals(b)
    assert not a.equals(c)


def test_fewer_trials_with_warning():
    # 2 male speakers with 2 files, 1 female with 3: 1+1+3 = 5 target pairs possible,
    # non-targets only among the males (4 pairs)
    val = plan_listing({
        "id00001": {"gender": "m", "sessions": {"a": 2}},
        "id00002": {"gender": "m", "sessions": {"b": 2}},
        "id00003": {"gender": "f", "sessions": {"c": 3}},
    })
    with pytest.warns(PrepareWarning, match="only 8 balanced trials of the 100"):
        t = make_val_trials(val, 100, seed=0, name="tiny")
    assert (t.label == 1).sum() == (t.label == 0).sum() == 4
