"""Validation trials: balanced, same-gender non-targets, spread evenly, deterministic."""

import warnings
from collections import Counter

import pytest
from fake_voxceleb import plan_listing, random_plan

from prepare.errors import PrepareWarning
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


def test_trials_spread_over_speakers(val):
    t = make_val_trials(val, 600, seed=1)
    n_files = Counter(val.spk_id)
    # targets cycle over speakers: counts differ by at most one among speakers not exhausted
    tgt = Counter(spk(a) for a in t.path1[t.label == 1])
    capacity = {s: n * (n - 1) // 2 for s, n in n_files.items()}
    open_spk = [s for s in capacity if capacity[s] > tgt[s]]
    low = min(tgt[s] for s in open_spk)
    assert all(tgt[s] <= low + 1 for s in tgt)
    # non-targets: each speaker's use within its gender differs by at most one
    nt = t[t.label == 0]
    use = Counter(map(spk, nt.path1)) + Counter(map(spk, nt.path2))
    gender = dict(zip(val.spk_id, val.gender, strict=False))
    for g in "mf":
        u = [use[s] for s in n_files if gender[s] == g]
        assert max(u) - min(u) <= 1, (g, sorted(u))
    # genders share the non-targets in proportion to their speakers
    n_m = sum(gender[s] == "m" for s in n_files)
    share_m = sum(gender[spk(a)] == "m" for a in nt.path1) / len(nt)
    assert abs(share_m - n_m / len(n_files)) < 0.02


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
