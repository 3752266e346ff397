"""lowres.scoring.score_norm against direct per-trial formulas on small random data."""

import numpy as np
import pytest
import torch

from lowres.scoring.score_norm import (
    as_norm_scores,
    center,
    cohort_statistics,
    cosine_trial_scores,
    fit_centering,
    length_norm,
    speaker_mean_cohort,
)


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def direct_as_norm(e, t, cohort, k):
    """The textbook formula for one trial, written out with Python loops."""
    s = cos(e, t)
    out = []
    for x in (e, t):
        top = sorted((cos(x, c) for c in cohort), reverse=True)[:k]
        out.append((s - np.mean(top)) / np.std(top, ddof=1))
    return (out[0] + out[1]) / 2


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 16))
    cohort = rng.normal(size=(25, 16))
    left = rng.integers(0, 40, 120)
    right = rng.integers(0, 40, 120)
    return emb, cohort, left, right


@pytest.mark.parametrize("k", [2, 5, 25, 300])
def test_as_norm_matches_direct_formula(data, k):
    emb, cohort, left, right = data
    got = as_norm_scores(emb, left, right, cohort, top_k=k).numpy()
    want = [direct_as_norm(emb[i], emb[j], cohort, k) for i, j in zip(left, right, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cohort_statistics_chunking_does_not_matter(data):
    emb, cohort, _, _ = data
    m1, s1 = cohort_statistics(emb, cohort, top_k=7, chunk_size=3)
    m2, s2 = cohort_statistics(emb, cohort, top_k=7, chunk_size=1000)
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(s1, s2)


def test_cosine_trial_scores(data):
    emb, _, left, right = data
    got = cosine_trial_scores(emb, left, right).numpy()
    want = [cos(emb[i], emb[j]) for i, j in zip(left, right, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_as_norm_rejects_tiny_cohort(data):
    emb, cohort, left, right = data
    with pytest.raises(ValueError, match="at least 2 cohort scores"):
        as_norm_scores(emb, left, right, cohort[:1])


def test_speaker_mean_cohort():
    emb = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    names, means = speaker_mean_cohort(emb, ["b", "a", "a", "b"])
    assert names == ["a", "b"]
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(means.numpy(), [[0.0, 1.0], [(1 + r) / 2, r / 2]], rtol=1e-6)


def test_centering_and_length_norm():
    rng = np.random.default_rng(1)
    train = rng.normal(3.0, 2.0, size=(500, 4))
    mean, std = fit_centering(train)
    np.testing.assert_allclose(mean.numpy(), train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), train.std(0, ddof=1), rtol=1e-5)
    c = center(train, mean, std)
    np.testing.assert_allclose(c.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(c.std(0).numpy(), 1, atol=1e-5)
    np.testing.assert_allclose(length_norm(train).norm(dim=1).numpy(), 1, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        fit_centering(train[:2])


def test_as_norm_variants_on_a_hand_made_example():
    """Unit vectors at 0, 90 and 45 degrees against a cohort at 0, 90 and 180 degrees:
    cohort scores e0 [1, 0, -1] (mean 0, sd 1), e1 [0, 1, 0] (mean 1/3, sd 1/sqrt(3)),
    e2 [1, 1, -1] / sqrt(2) (mean 1/(3 sqrt(2)), sd sqrt(2/3))."""
    r2, r3 = np.sqrt(2), np.sqrt(3)
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1 / r2, 1 / r2]])
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    left, right = [1, 2, 0], [0, 0, 2]  # raw scores 0, 1/sqrt(2), 1/sqrt(2)
    # the original's: the enrol (left) side's statistics over the whole cohort only, so
    # (e2, e0) and (e0, e2) differ; top_k plays no part
    for k in (2, 300):
        one = as_norm_scores(emb, left, right, cohort, top_k=k,
                             variant="one_sided_whole_cohort").numpy()
        np.testing.assert_allclose(one, [-1 / r3, 1 / r3, 1 / r2], rtol=1e-5)
    # ours: the mean of both sides' normalised scores, symmetric; over the top_k only
    two = as_norm_scores(emb, left, right, cohort, top_k=3).numpy()
    np.testing.assert_allclose(two, [-0.5 / r3, (1 / r3 + 1 / r2) / 2, (1 / r3 + 1 / r2) / 2],
                               rtol=1e-5)
    # top 2: e0 [1, 0] and e1 [1, 0], mean 1/2 and sd 1/sqrt(2) each
    np.testing.assert_allclose(as_norm_scores(emb, [1], [0], cohort, top_k=2).numpy(),
                               [-1 / r2], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown AS-norm variant"):
        as_norm_scores(emb, left, right, cohort, variant="one_sided_top_k")
