"""Subset and split rules (docs/study.md, 'The three subsets') against expectations
computed by plain loops.

The expectations below are written independently of prepare.subsets /
prepare.split (dicts and loops over a small listing, no pandas groupby); only
the seeded random sources (prepare.seeding) are shared, so that random draws
can be compared exactly.
"""

import warnings
from collections import Counter, defaultdict

import pandas as pd
import pytest
from fake_voxceleb import plan_listing, random_plan

from prepare.errors import PrepareError, PrepareWarning
from prepare.seeding import file_keys, speaker_rng
from prepare.split import split_validation
from prepare.subsets import (
    check_not_empty,
    parse_budget,
    select_budget,
    select_from_list,
    select_tiny_few,
    select_tiny_many,
    subset_val,
    write_subset_list,
)

SEED = 1337


@pytest.fixture(scope="module")
def listing():
    return plan_listing(random_plan(60, seed=3, max_sessions=14, max_files=10))


def sessions_of(df):
    out = defaultdict(lambda: defaultdict(list))
    for id_, spk, ses in zip(df.ID, df.spk_id, df.session, strict=True):
        out[spk][ses].append(id_)
    return out


# ---------------------------------------------------------------- validation split
def expected_val_sessions(df, fraction, seed):
    val = set()
    for spk, sessions in sessions_of(df).items():
        names = sorted(sessions)
        total = sum(len(sessions[s]) for s in names)
        remaining, moved = list(names), 0
        rng = speaker_rng(seed, spk, "val_split")
        while moved <= fraction * total and len(remaining) > 1:
            drawn = rng.choice(len(remaining), size=min(3, len(remaining)), replace=False)
            best = None
            for i in drawn:
                s = remaining[i]
                if best is None or (len(sessions[s]), s) < (len(sessions[remaining[best]]),
                                                            remaining[best]):
                    best = i
            s = remaining.pop(best)
            val.add((spk, s))
            moved += len(sessions[s])
    return val


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.3])
def test_val_split_rule(listing, fraction):
    is_val = split_validation(listing, fraction, SEED)
    got = set(zip(listing.spk_id[is_val], listing.session[is_val], strict=True))
    assert got == expected_val_sessions(listing, fraction, SEED)
    by = sessions_of(listing)
    for spk, sessions in by.items():
        val_ses = {s for s in sessions if (spk, s) in got}
        train_ses = set(sessions) - val_ses
        total = sum(map(len, sessions.values()))
        n_val = sum(len(sessions[s]) for s in val_ses)
        assert train_ses, f"{spk} kept no train session"
        # more than the fraction moved, unless only one session is left in train
        assert n_val > fraction * total or len(train_ses) == 1
        # minimal: before the last move the fraction was not yet exceeded
        if val_ses:
            assert any(n_val - len(sessions[s]) <= fraction * total for s in val_ses)


def test_val_split_is_session_disjoint_and_seeded(listing):
    a = split_validation(listing, 0.1, 1)
    b = split_validation(listing.sample(frac=1, random_state=0), 0.1, 1).reindex(listing.index)
    assert (a == b).all(), "row order must not matter"
    c = split_validation(listing, 0.1, 2)
    assert not (a == c).all()
    key = listing.spk_id + "/" + listing.session
    assert not set(key[a]) & set(key[~a])
    # a speaker's split does not depend on the other speakers
    one = listing[listing.spk_id == "id00007"]
    assert (split_validation(one, 0.1, 1) == a[one.index]).all()


# ---------------------------------------------------------------- tiny_few
def test_tiny_few_rule(listing):
    counts = Counter(listing.spk_id)
    gender = dict(zip(listing.spk_id, listing.gender, strict=False))
    expect = set()
    for g in ("m", "f"):
        spks = sorted((s for s in counts if gender[s] == g), key=lambda s: (-counts[s], s))
        expect |= set(spks[:7])
    got = select_tiny_few(listing, 7)
    assert set(got.spk_id) == expect
    assert set(got.ID) == {i for i, s in zip(listing.ID, listing.spk_id, strict=True)
                           if s in expect}  # all their files


def test_tiny_few_short_gender_warns(listing):
    with pytest.warns(PrepareWarning, match="speakers available"):
        got = select_tiny_few(listing, 1000)
    assert len(got) == len(listing)


# ---------------------------------------------------------------- tiny_many
def expected_many(df, k, cap, seed):
    key = dict(zip(df.ID, file_keys(df.ID, seed, "files_within_session"), strict=True))
    picked = set()
    for _spk, sessions in sessions_of(df).items():
        order = sorted(sessions, key=lambda s: (-len(sessions[s]), s))  # most files first
        queues = {s: sorted(sessions[s], key=lambda i: key[i]) for s in order}
        taken = []
        while len(taken) < k and any(queues.values()):
            for s in order:  # one pass: at most `cap` new files per session visit
                for _ in range(cap):
                    if queues[s] and len(taken) < k:
                        taken.append(queues[s].pop(0))
        picked |= set(taken)
    return picked


@pytest.mark.parametrize("k, cap", [(8, 8), (8, 1), (5, 2), (20, 3)])
def test_tiny_many_rule(listing, k, cap):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = select_tiny_many(listing, k, cap, SEED)
    assert set(got.ID) == expected_many(listing, k, cap, SEED)
    n = Counter(got.spk_id)
    total = Counter(listing.spk_id)
    short = any(total[s] < k for s in total)  # such speakers keep all, with a warning
    assert any(issubclass(w.category, PrepareWarning) for w in caught) == short
    assert set(n) == set(total)  # every speaker
    assert all(n[s] == min(k, total[s]) for s in total)


def test_tiny_many_high_uses_most_sessions(listing):
    high = select_tiny_many(listing, 8, 1, SEED)
    low = select_tiny_many(listing, 8, 8, SEED)
    ses = listing.groupby("spk_id").session.nunique()
    h = high.groupby("spk_id").session.nunique()
    lo = low.groupby("spk_id").session.nunique()
    assert (h == ses.clip(upper=8)).all()  # one file per session while sessions last
    assert (lo <= h).all() and lo.mean() < h.mean()


def test_tiny_many_second_pass():
    # one speaker, sessions of 3, 2, 1 files; K=5, cap 1 -> pass 1 takes 3 files, pass 2 two
    df = plan_listing({"id00001": {"gender": "m", "sessions": {"a": 3, "b": 2, "c": 1}}})
    got = select_tiny_many(df, 5, 1, SEED)
    assert Counter(got.session) == {"a": 2, "b": 2, "c": 1}
    assert set(got.ID) == expected_many(df, 5, 1, SEED)


# ---------------------------------------------------------------- budgets, val, lists
def test_budget_axes(listing):
    sub = select_budget(listing, seed=SEED, speakers_per_gender=5, max_sessions_per_speaker=2,
                        max_files_per_session=3)
    assert sub.spk_id.nunique() == 10
    assert (sub.groupby("spk_id").session.nunique() <= 2).all()
    assert (sub.groupby(["spk_id", "session"]).size() <= 3).all()
    # sessions kept are each speaker's two largest (ties by name)
    for spk, g in listing[listing.spk_id.isin(sub.spk_id)].groupby("spk_id"):
        sizes = g.session.value_counts()
        top = sorted(sizes.index, key=lambda s: (-sizes[s], s))[:2]
        assert set(sub[sub.spk_id == spk].session) == set(top)
    assert parse_budget("mine:speakers_per_gender=5,files_per_speaker=4") == (
        "mine", {"speakers_per_gender": 5, "files_per_speaker": 4})
    with pytest.raises(PrepareError, match="bad subset spec"):
        parse_budget("mine:speakers=5")


def test_subset_val_and_empty(listing):
    is_val = split_validation(listing, 0.1, SEED)
    train, val = listing[~is_val], listing[is_val]
    few = select_tiny_few(train, 3)
    sv = subset_val(val, few)
    assert set(sv.spk_id) == set(few.spk_id)
    assert set(sv.ID) == {i for i, s in zip(val.ID, val.spk_id, strict=True)
                          if s in set(few.spk_id)}
    with pytest.raises(PrepareError, match="subset 'x' is empty"):
        check_not_empty("x", train.iloc[:0], val)


def test_list_round_trip_and_missing_key(listing, tmp_path):
    train, val = listing.iloc[::3], listing.iloc[1::6]
    p = tmp_path / "mine_utterance_list.csv"
    write_subset_list(p, train, val)
    assert p.read_text().splitlines()[0] == "utterance_key;shard_dix;set_name"
    t2, v2 = select_from_list(listing, p)
    assert set(t2.ID) == set(train.ID) and set(v2.ID) == set(val.ID)
    bad = tmp_path / "bad_utterance_list.csv"
    bad.write_text(p.read_text() + "id99999/nope/00001;0;train\n")
    with pytest.raises(PrepareError) as e:
        select_from_list(listing, bad)
    assert "id99999/nope/00001" in str(e.value) and str(bad) in str(e.value)
    worse = tmp_path / "worse_utterance_list.csv"
    worse.write_text("utterance_key;shard_dix;set_name\nid00001/S1_0/00001;0;test\n")
    with pytest.raises(PrepareError, match="set_name 'test'"):
        select_from_list(listing, worse)


def test_reference_lists_have_the_published_shape():
    """The published lists follow the rules: checks on their own numbers (docs/study.md,
    'The three subsets')."""
    from pathlib import Path

    ref = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not ref.is_dir():
        pytest.skip("shared/reference not present")
    few = pd.read_csv(ref / "tiny_few_utterance_list.csv", sep=";")
    tr = few[few.set_name == "train"].utterance_key.str.split("/", expand=True)
    assert len(tr) == 49400 and tr[0].nunique() == 100
    high = pd.read_csv(ref / "tiny_many_high_utterance_list.csv", sep=";")
    tr = high[high.set_name == "train"].utterance_key.str.split("/", expand=True)
    assert len(tr) == 47952 and (tr.groupby(0).size() == 8).all()
    ses = tr.groupby(0)[1].nunique()
    assert ses.min() == 4 and ses.max() == 8  # "4 to 8 sessions per speaker"


def test_reference_lists_read_as_published():
    from pathlib import Path

    from prepare.subsets import list_name, read_subset_list

    ref = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not ref.is_dir():
        pytest.skip("shared/reference not present")
    p = ref / "tiny_few_utterance_list.csv"
    df = read_subset_list(p)
    assert list_name(p) == "tiny_few"
    assert (df.set_name == "train").sum() == 49400 and (df.set_name == "val").sum() == 599
    assert df.ID.iloc[0] == "id07078/_uMiWGS0CYU/00339"
