"""Speaker bootstrap: exact against explicit resampled lists, coverage, reproducibility."""

import numpy as np
import pytest

from lowres.scoring.bootstrap import SpeakerBootstrap, speaker_bootstrap
from lowres.scoring.calibration import Calibration, cllr, min_cllr
from lowres.scoring.metrics import eer, min_dcf


def simulated_list(rng, speakers: int, targets_per_speaker: int, non_targets: int,
                   tar_sd: float = 0.4, non_sd: float = 0.25, decimals: int | None = None):
    """Scores with per-speaker effects: a speaker's targets and non-targets move together."""
    tar_shift = rng.normal(0.0, tar_sd, speakers)
    non_shift = rng.normal(0.0, non_sd, speakers)
    a_tar = np.repeat(np.arange(speakers), targets_per_speaker)
    a = rng.integers(0, speakers, non_targets)
    b = (a + rng.integers(1, speakers, non_targets)) % speakers
    spk1 = np.concatenate([a_tar, a])
    spk2 = np.concatenate([a_tar, b])
    labels = np.concatenate([np.ones(a_tar.size, bool), np.zeros(non_targets, bool)])
    scores = np.concatenate([2.0 + tar_shift[a_tar], non_shift[a] + non_shift[b]])
    scores = scores + rng.normal(0.0, 1.0, scores.size)
    if decimals is not None:  # ties within and across classes
        scores = np.round(scores, decimals)
    return scores, labels, spk1.astype(str), spk2.astype(str)


def explicit_resample(scores, labels, spk1, spk2, drawn):
    """The trial list of a test set made of the speakers in ``drawn`` (with repeats).

    Each drawn copy is a new speaker: it brings its own target trials, and meets every
    copy of every other drawn speaker in their non-target trials.
    """
    rows = []
    for i, s in enumerate(drawn):
        rows += [k for k in np.flatnonzero(labels & (spk1 == s))]
        for t in drawn[i + 1:]:
            rows += [k for k in np.flatnonzero(~labels & (((spk1 == s) & (spk2 == t))
                                                          | ((spk1 == t) & (spk2 == s))))]
    rows = np.array(rows)
    return scores[rows], labels[rows]


@pytest.mark.parametrize("decimals", [None, 1])
def test_weighted_metrics_equal_explicit_resampled_lists(decimals):
    rng = np.random.default_rng(3)
    s, y, spk1, spk2 = simulated_list(rng, 9, 12, 150, decimals=decimals)
    calibration = Calibration(1.7, -1.2)
    boot = SpeakerBootstrap(s, y, spk1, spk2, calibration)
    counts = boot.counts(6, seed=5)
    values = boot.metrics(counts)
    assert set(values) == {"eer", "min_dcf_0.01", "min_dcf_0.05", "cllr", "min_cllr"}
    assert (counts.max(axis=1) > 1).all()  # every draw repeats a speaker
    for d, m in enumerate(counts):
        rs, ry = explicit_resample(s, y, spk1, spk2, np.repeat(boot.speakers, m))
        assert values["eer"][d] == pytest.approx(eer(rs, ry).eer, rel=1e-12, abs=1e-15)
        for p in (0.01, 0.05):
            assert values[f"min_dcf_{p:g}"][d] == pytest.approx(min_dcf(rs, ry, p), rel=1e-12)
        assert values["cllr"][d] == pytest.approx(cllr(calibration.llr(rs), ry), rel=1e-12)
        assert values["min_cllr"][d] == pytest.approx(min_cllr(rs, ry), rel=1e-12)
    # Every speaker once: the list itself.
    ones = boot.metrics(np.ones((1, boot.speakers.size)))
    assert ones["eer"][0] == pytest.approx(eer(s, y).eer, rel=1e-12)
    assert ones["min_cllr"][0] == pytest.approx(min_cllr(s, y), rel=1e-12)
    assert ones["cllr"][0] == pytest.approx(cllr(calibration.llr(s), y), rel=1e-12)


def test_metrics_asked_by_name_and_draws_without_a_class():
    rng = np.random.default_rng(4)
    s, y, spk1, spk2 = simulated_list(rng, 5, 6, 60)
    boot = SpeakerBootstrap(s, y, spk1, spk2)
    assert boot.metric_names == ("eer", "min_dcf_0.01", "min_dcf_0.05", "min_cllr")
    one = np.zeros((1, 5))
    one[0, 2] = 5  # one speaker five times: targets only
    values = boot.metrics(np.vstack([one, np.ones((1, 5))]), ["min_dcf_0.1", "min_cllr"])
    assert set(values) == {"min_dcf_0.1", "min_cllr"}
    assert np.isnan(values["min_cllr"][0]) and np.isnan(values["min_dcf_0.1"][0])
    assert values["min_dcf_0.1"][1] == pytest.approx(min_dcf(s, y, 0.1), rel=1e-12)
    with pytest.raises(ValueError, match="calibration"):
        boot.metrics(one, ["cllr"])
    with pytest.raises(ValueError, match="unknown metric"):
        boot.metrics(one, ["auc"])


def test_coverage_of_population_eer_and_trial_bootstrap_is_narrower():
    """Many 40-speaker test sets from one population with per-speaker score effects."""
    rng = np.random.default_rng(0)
    # Population EER: every trial from a fresh speaker, so the scores are the mixtures.
    n = 2_000_000
    pop_tar = 2.0 + rng.normal(0.0, 0.4, n) + rng.normal(0.0, 1.0, n)
    pop_non = rng.normal(0.0, 0.25, n) + rng.normal(0.0, 0.25, n) + rng.normal(0.0, 1.0, n)
    pop_eer = eer(np.concatenate([pop_tar, pop_non]),
                  np.concatenate([np.ones(n, bool), np.zeros(n, bool)])).eer
    repetitions, draws = 200, 200
    covered, speaker_width, trial_width = 0, [], []
    for r in range(repetitions):
        s, y, spk1, spk2 = simulated_list(rng, 40, 40, 1600)
        boot = SpeakerBootstrap(s, y, spk1, spk2)
        low, high = np.percentile(boot.metrics(boot.counts(draws, seed=r))["eer"], [2.5, 97.5])
        covered += low <= pop_eer <= high
        if r < 20:
            speaker_width.append(high - low)
            # Trial bootstrap: targets and non-targets resampled as if independent.
            tar, non = np.flatnonzero(y), np.flatnonzero(~y)
            e = [eer(s[idx], y[idx]).eer for idx in (
                np.concatenate([rng.choice(tar, tar.size), rng.choice(non, non.size)])
                for _ in range(draws))]
            trial_width.append(np.subtract(*np.percentile(e, [97.5, 2.5])))
    # Measured: 93.0 % (186 of 200).  With 10 targets per speaker instead of 40 it was
    # 99.5 %: when trial noise outweighs the speaker effects, the m_a * m_b weights
    # overstate its variance and the interval is conservative.
    assert 0.90 <= covered / repetitions <= 0.99
    # Measured: trial-bootstrap intervals are 0.42 times as wide as speaker ones.
    assert np.mean(trial_width) < 0.6 * np.mean(speaker_width)


def test_reproducible_with_a_seed():
    rng = np.random.default_rng(1)
    s, y, spk1, spk2 = simulated_list(rng, 12, 5, 100)
    p1 = [f"{x}/v/1.wav" for x in spk1]
    p2 = [f"{x}/v/2.wav" for x in spk2]
    first = speaker_bootstrap(s, y, p1, p2, draws=50, seed=7)
    assert speaker_bootstrap(s, y, p1, p2, draws=50, seed=7) == first
    assert speaker_bootstrap(s, y, p1, p2, draws=50, seed=8) != first
    assert (first.level, first.draws, first.seed, first.speakers) == (0.95, 50, 7, 12)
    low, high = first.intervals["eer"]
    assert low < eer(s, y).eer < high
    entry = first.as_json()
    assert entry["eer"] == [low, high] and entry["n_speakers"] == 12
    assert set(entry) == {"method", "level", "draws", "seed", "n_speakers", "degenerate_draws",
                          "eer", "min_dcf_0.01", "min_dcf_0.05", "min_cllr"}


def test_refuses_one_speaker_and_levels_outside_0_1():
    s, y = np.array([0.9, 0.1, 0.8]), np.array([1, 0, 1])
    with pytest.raises(ValueError, match="1 speaker"):
        speaker_bootstrap(s[[0, 2]], [1, 0], ["a/1.wav"] * 2, ["a/2.wav"] * 2)
    p1, p2 = ["a/1.wav", "a/1.wav", "b/1.wav"], ["a/2.wav", "b/2.wav", "b/2.wav"]
    for level in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="level"):
            speaker_bootstrap(s, y, p1, p2, level=level)
