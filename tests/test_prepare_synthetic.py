"""prepare.voxceleb on the real synthetic corpus (the `prepared_manifests` fixture):
m4a conversion, listing and the subset rules of
docs/study.md ('The three subsets') at the fixture's budgets."""

from collections import Counter

import pandas as pd
import pytest

COLUMNS = ["ID", "duration", "wav", "spk_id", "session", "gender"]
PER_GENDER = 4  # --few_speakers_per_gender in conftest.SMALL_PREPARE_ARGS

pytestmark = pytest.mark.slow


def load(m, name):
    return (pd.read_csv(m / name / "train.csv"), pd.read_csv(m / name / "val.csv"),
            pd.read_csv(m / name / "val_trials.txt", sep=" ", header=None,
                        names=["label", "p1", "p2"]))


def test_synthetic_corpus_prepared_by_the_rules(prepared_manifests, synthetic_corpus):
    m = prepared_manifests
    full, full_val, _ = load(m, "full")
    n_m4a = sum(1 for _ in (synthetic_corpus / "voxceleb2/dev/aac").rglob("*.m4a"))
    assert len(full) + len(full_val) == n_m4a  # every m4a converted and listed
    assert full.wav.map(lambda p: p.endswith(".wav")).all()
    counts = Counter(full.spk_id)
    gender = dict(zip(full.spk_id, full.gender, strict=False))
    for name in ("full", "tiny_few", "tiny_many_low", "tiny_many_high"):
        train, val, trials = load(m, name)
        assert list(train.columns[:6]) == COLUMNS and list(val.columns[:6]) == COLUMNS
        # validation = the validation split restricted to the subset's speakers
        assert set(val.ID) == set(full_val.ID[full_val.spk_id.isin(set(train.spk_id))])
        assert set(train.ID) <= set(full.ID)
        assert (trials.label == 1).sum() == (trials.label == 0).sum() > 0
        assert set(trials.p1.str[:-4]) | set(trials.p2.str[:-4]) <= set(val.ID)
    few, _, _ = load(m, "tiny_few")
    for g in "mf":
        ranked = sorted((s for s in counts if gender[s] == g), key=lambda s: (-counts[s], s))
        assert set(few.spk_id[few.gender == g]) == set(ranked[:PER_GENDER])
    assert Counter(few.spk_id) == {s: counts[s] for s in set(few.spk_id)}
    for name, cap in (("tiny_many_low", 8), ("tiny_many_high", 1)):
        sub, _, _ = load(m, name)
        assert Counter(sub.spk_id) == {s: min(8, n) for s, n in counts.items()}
        n_ses = full.groupby("spk_id").session.nunique()
        got = sub.groupby("spk_id").session.nunique()
        if cap == 1:  # one file per session while sessions last
            assert (got == n_ses.clip(upper=8)).all()
    for t in ("original", "extended", "hard"):
        man = pd.read_csv(m / "test" / f"{t}.csv")
        tr = pd.read_csv(m / "test" / f"{t}_trials.txt", sep=" ", header=None)
        assert set(man.ID + ".wav") == set(tr[1]) | set(tr[2])
