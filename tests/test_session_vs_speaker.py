"""benchmarks/session_vs_speaker.py: the diagnostic that tells voice from channel learning."""

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, load_script


@pytest.fixture(scope="module")
def diag():
    return load_script(ROOT / "benchmarks" / "session_vs_speaker.py", "session_vs_speaker")


def files() -> pd.DataFrame:
    """4 speakers (2 m, 2 f) x 3 sessions x 2 utterances."""
    rows = [(f"s{s}", f"s{s}_k{k}", "m" if s < 2 else "f")
            for s in range(4) for k in range(3) for _ in range(2)]
    return pd.DataFrame(rows, columns=["spk_id", "session", "gender"])


def test_pairs_split_targets_by_session_and_keep_nontargets_same_gender(diag):
    f = files()
    same, cross, non = diag.trial_pairs(f, nontarget_fraction=1.0)
    assert len(same) == 4 * 3 and len(cross) == 4 * (15 - 3)  # C(6,2)=15 pairs per speaker
    for i, j in same:
        assert f.session[i] == f.session[j]
    for i, j in cross:
        assert f.spk_id[i] == f.spk_id[j] and f.session[i] != f.session[j]
    assert len(non) == 2 * 6 * 6  # both genders: 6 x 6 pairs across their two speakers
    for i, j in non:
        assert f.spk_id[i] != f.spk_id[j] and f.gender[i] == f.gender[j]


def test_a_session_detector_is_perfect_within_sessions_and_at_chance_across(diag):
    f = files()
    same, cross, non = diag.trial_pairs(f, nontarget_fraction=1.0)
    sessions = sorted(set(f.session))
    by_session = np.eye(len(sessions))[[sessions.index(s) for s in f.session]]
    assert diag.pair_eer(by_session, same, non) == 0.0
    assert diag.pair_eer(by_session, cross, non) >= 0.5
    speakers = sorted(set(f.spk_id))
    by_speaker = np.eye(len(speakers))[[speakers.index(s) for s in f.spk_id]]
    assert diag.pair_eer(by_speaker, cross, non) == 0.0
