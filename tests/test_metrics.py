"""lowres.scoring.metrics against a brute-force reference that enumerates every threshold."""

import numpy as np
import pytest
import torch

from lowres.scoring.metrics import EerResult, eer, min_dcf, min_dcf_with_threshold, operating_points


def reference_points(scores, labels):
    """Every threshold between distinct scores plus +-inf; rates counted directly."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    u = np.unique(scores)
    thresholds = [-np.inf] + [(a + b) / 2 for a, b in zip(u[:-1], u[1:], strict=True)] + [np.inf]
    tar, non = scores[labels], scores[~labels]
    pm = np.array([(tar < t).mean() for t in thresholds])
    pf = np.array([(non >= t).mean() for t in thresholds])
    return np.array(thresholds), pm, pf


def reference_eer(scores, labels):
    """Crossing of the piecewise-linear (p_miss, p_fa) curve with p_miss == p_fa."""
    _, pm, pf = reference_points(scores, labels)
    for k in range(len(pm) - 1):
        a0, b0, a1, b1 = pm[k], pf[k], pm[k + 1], pf[k + 1]
        # Segment from (a0, b0) to (a1, b1); solve a0 + u (a1 - a0) == b0 + u (b1 - b0).
        if a0 < b0 and a1 >= b1:
            u = (b0 - a0) / ((a1 - a0) - (b1 - b0))
            return a0 + u * (a1 - a0)
    raise AssertionError("no crossing")


def reference_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0):
    _, pm, pf = reference_points(scores, labels)
    dcf = c_miss * p_target * pm + c_fa * (1 - p_target) * pf
    return dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target))


def random_trials(rng, n, n_levels=None, p_target=0.3):
    labels = rng.random(n) < p_target
    labels[0], labels[1] = True, False
    scores = rng.normal(size=n) + 1.0 * labels
    if n_levels is not None:  # quantise to force many ties, also across classes
        scores = np.round(scores * n_levels) / n_levels
    return scores, labels.astype(int)


@pytest.mark.parametrize("seed", range(30))
def test_against_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    levels = [None, 1, 3, 10][seed % 4]
    scores, labels = random_trials(rng, n, levels, p_target=rng.uniform(0.05, 0.95))
    e, t = eer(scores, labels)
    assert e == pytest.approx(reference_eer(scores, labels), abs=1e-12)
    for p in (0.01, 0.05, 0.5):
        assert min_dcf(scores, labels, p) == pytest.approx(
            reference_min_dcf(scores, labels, p), abs=1e-12)
    assert min_dcf(scores, labels, 0.05, c_miss=10, c_fa=1) == pytest.approx(
        reference_min_dcf(scores, labels, 0.05, 10, 1), abs=1e-12)
    thr, pm, pf = operating_points(scores, labels)
    rthr, rpm, rpf = reference_points(scores, labels)
    np.testing.assert_allclose(pm, rpm)
    np.testing.assert_allclose(pf, rpf)
    np.testing.assert_allclose(thr, rthr)


def test_threshold_reproduces_its_operating_point():
    rng = np.random.default_rng(1)
    scores, labels = random_trials(rng, 2000, n_levels=20)
    res = eer(scores, labels)
    tar, non = scores[labels == 1], scores[labels == 0]
    pm, pf = (tar < res.threshold).mean(), (non >= res.threshold).mean()
    # The threshold belongs to an operating point next to the crossing.
    assert abs(pm - res.eer) < 0.01 and abs(pf - res.eer) < 0.01
    d, t = min_dcf_with_threshold(scores, labels, 0.01)
    pm, pf = (tar < t).mean(), (non >= t).mean()
    assert d == pytest.approx((0.01 * pm + 0.99 * pf) / 0.01)


def test_hand_computed_values():
    # Points: (0,1) (0,.5) (.5,.5) (.5,0) (1,0) -> EER 0.5 exactly at threshold 0.25.
    assert eer([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]) == EerResult(0.5, 0.25)
    # Perfect separation: EER 0 at the midpoint between the classes.
    assert eer([0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1]) == EerResult(0.0, 1.5)
    # Perfectly wrong: EER 1.
    assert eer([3.0, 2.0, 1.0, 0.0], [0, 0, 1, 1]).eer == 1.0
    # All scores tied: the only segment is the diagonal, crossing at 0.5.
    assert eer([0.7] * 6, [1, 0, 0, 1, 0, 0]).eer == pytest.approx(0.5)
    assert min_dcf([0.7] * 6, [1, 0, 0, 1, 0, 0], 0.01) == pytest.approx(1.0)
    # One target below one of three non-targets: miss 0 at fa 1/3 or miss 1/2 at fa 0.
    s, y = [0.0, 1.0, 2.0, 3.0, 4.0], [0, 0, 1, 0, 1]
    assert eer(s, y).eer == pytest.approx(reference_eer(s, y))
    # minDCF, p=0.5: min over points of (pm + pf)/2 / 0.5 = pm + pf; best is 1/3 (pm 0, pf 1/3).
    assert min_dcf(s, y, 0.5) == pytest.approx(1 / 3)


def test_ties_are_never_split():
    # Two tied target/non-target pairs: a threshold inside a tie would give EER 0.
    scores = [1.0, 1.0, 2.0, 2.0]
    labels = [1, 0, 1, 0]
    assert eer(scores, labels).eer == pytest.approx(0.5)
    thr, _, _ = operating_points(scores, labels)
    np.testing.assert_array_equal(thr, [-np.inf, 1.5, np.inf])


def test_accepts_torch_and_bool():
    rng = np.random.default_rng(2)
    s, y = random_trials(rng, 100)
    assert eer(torch.tensor(s), torch.tensor(y).bool()) == eer(s, y)
    assert eer(s.astype(np.float32), y) == eer(s.astype(np.float32).astype(float), y)


def test_adjacent_floats_get_a_separating_threshold():
    a = 1.0
    b = np.nextafter(a, 2.0)
    res = eer([a, b], [0, 1])
    assert res.eer == 0.0 and a < res.threshold <= b


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([0.1, 0.2], [1, 1], "all 2 trials are target"),
        ([0.1, 0.2], [0, 0], "all 2 trials are non-target"),
        ([], [], "empty"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
        ([[0.1, 0.2]], [[0, 1]], "one-dimensional"),
    ],
)
def test_degenerate_inputs_raise(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        eer(scores, labels)
    with pytest.raises(ValueError, match=match):
        min_dcf(scores, labels, 0.01)


def test_bad_dcf_parameters():
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.0, 1.0], [0, 1], 0.0)
    with pytest.raises(ValueError, match="positive"):
        min_dcf([0.0, 1.0], [0, 1], 0.01, c_miss=0)


def test_close_to_speechbrain_on_continuous_scores():
    from speechbrain.utils.metric_stats import EER as sb_eer

    rng = np.random.default_rng(3)
    scores, labels = random_trials(rng, 1000)
    t = torch.tensor(scores)
    sb, _ = sb_eer(t[labels == 1], t[labels == 0])
    # Different interpolation conventions; both within one trial's rate.
    assert abs(eer(scores, labels).eer - float(sb)) < 2 / min(labels.sum(), (1 - labels).sum())
