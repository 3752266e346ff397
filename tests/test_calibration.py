"""lowres.scoring.calibration on Gaussian scores with a known LLR, and min Cllr against PAV.

Equal-variance Gaussians (targets N(2, 1), non-targets N(0, 1)) have the true LLR
``2 s - 2`` and, for LLRs distributed N(+-d^2/2, d^2) with d = 2, the Cllr
E[log2(1 + exp(-L))] = 0.51406 (numerical integral below).  Tolerances are multiples of
the sampling error at 20,000 trials per class (measured over 20 seeds, and the Fisher
information of the logistic model): fitted scale / offset SE 0.019 / 0.024, Cllr SE 0.0034.
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from lowres.scoring.calibration import (
    Calibration,
    act_dcf,
    bayes_threshold,
    cllr,
    fit_calibration,
    min_cllr,
)
from lowres.scoring.metrics import min_dcf

N = 20000


def gaussian_trials(n_tar, n_non, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(2.0, 1.0, n_tar), rng.normal(0.0, 1.0, n_non)])
    return scores, np.r_[np.ones(n_tar, int), np.zeros(n_non, int)]


def theoretical_cllr(d=2.0):
    f = lambda L: stats.norm.pdf(L, d * d / 2, d) * np.logaddexp(0.0, -L)  # noqa: E731
    return integrate.quad(f, -40, 40)[0] / math.log(2)


def test_fit_recovers_the_true_llr_of_gaussian_scores():
    s, y = gaussian_trials(N, N)
    cal = fit_calibration(s, y)
    assert cal.scale == pytest.approx(2.0, abs=4 * 0.019)
    assert cal.offset == pytest.approx(-2.0, abs=4 * 0.024)
    fitted, true = cllr(cal.llr(s), y), cllr(2 * s - 2, y)
    # The fit minimises the sample's Cllr over all linear maps, the true LLR among them
    # (the Platt smoothing costs ~1e-6).
    assert fitted <= true + 1e-4
    assert fitted == pytest.approx(theoretical_cllr(), abs=5 * 0.0034)


def test_prior_weighting_makes_the_fit_independent_of_the_class_proportions():
    # 1 target per 20 non-targets: an unweighted logistic regression would move the
    # offset by log(1/20) = -3.0; the prior-weighted one keeps the LLR (2 s - 2).
    s, y = gaussian_trials(N // 10, 2 * N, seed=1)
    for prior in (0.5, 0.05):
        cal = fit_calibration(s, y, prior=prior)
        assert cal.scale == pytest.approx(2.0, abs=0.2)
        assert cal.offset == pytest.approx(-2.0, abs=0.25)


def test_min_cllr_is_the_cllr_of_a_perfect_calibration():
    s, y = gaussian_trials(N, N, seed=2)
    low = min_cllr(s, y)
    true = cllr(2 * s - 2, y)
    assert low <= true  # PAV is the best monotone map, the true LLR is one
    assert true - low < 0.01  # ... and the true LLR is (nearly) as good: 0.0025 measured
    # min Cllr depends on the order only; a miscalibrated LLR pays for it in Cllr.
    assert min_cllr(5 * s + 3, y) == pytest.approx(low, abs=1e-12)
    assert cllr(3 * (2 * s - 2), y) - low > 0.1
    assert cllr(2 * s - 2 + 3, y) - low > 0.1
    # A system that always says 0 costs exactly 1; one that ignores the scores can do no
    # better than that.
    assert cllr(np.zeros_like(s), y) == pytest.approx(1.0)
    assert min_cllr(np.zeros_like(s), y) == pytest.approx(1.0)


def reference_min_cllr(scores, labels):
    """Plain pool-adjacent-violators over tie groups, then the Cllr of its LLRs."""
    scores = np.asarray(scores, float)
    labels = np.asarray(labels).astype(bool)
    blocks = []  # [targets, trials]
    for v in np.unique(scores):
        sel = scores == v
        blocks.append([labels[sel].sum(), sel.sum()])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            t, n = blocks.pop()
            blocks[-1][0] += t
            blocks[-1][1] += n
    post = np.concatenate([[t / n] * n for t, n in blocks])
    sorted_labels = labels[np.argsort(scores, kind="stable")]
    with np.errstate(divide="ignore"):
        llr = np.log(post) - np.log1p(-post) - math.log(labels.sum() / (~labels).sum())
    return cllr(llr, sorted_labels)


@pytest.mark.parametrize("seed", range(6))
def test_min_cllr_equals_pav(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = rng.random(n) < rng.uniform(0.1, 0.9)
    labels[:2] = [True, False]
    levels = [3, 20, None][seed % 3]  # many ties, some ties, none
    raw = rng.normal(size=n) + labels * rng.uniform(0, 3)
    scores = np.round(raw * (levels or 1e6) / 3) if levels else raw
    assert min_cllr(scores, labels) == pytest.approx(reference_min_cllr(scores, labels),
                                                     rel=1e-12, abs=1e-12)


def test_min_cllr_equals_pav_where_the_curve_is_far_from_convex():
    """A third of the targets score below every non-target: long convex stretches of the
    curve lie above its hull, which the hull must still find."""
    rng = np.random.default_rng(7)
    targets = np.concatenate([rng.normal(3.0, 0.5, 700), rng.normal(-4.0, 0.3, 300)])
    scores = np.round(np.concatenate([targets, rng.normal(0.0, 1.0, 1500)]), 3)
    labels = np.arange(scores.size) < targets.size
    assert min_cllr(scores, labels) == pytest.approx(reference_min_cllr(scores, labels),
                                                     rel=1e-12)


def test_separable_and_perfect_scores():
    # Separable trials: finite fit (Platt smoothing), min Cllr 0.
    cal = fit_calibration([0.0, 0.1, 0.9, 1.0], [0, 0, 1, 1])
    assert math.isfinite(cal.scale) and 0 < cal.scale < 100
    assert min_cllr([0.0, 0.1, 0.9, 1.0], [0, 0, 1, 1]) == 0.0
    # Constant scores: no slope, the offset of the (smoothed) prior.
    cal = fit_calibration([0.3] * 4, [0, 0, 1, 1])
    assert cal == Calibration(0.0, 0.0)


def test_act_dcf_at_the_bayes_threshold():
    assert bayes_threshold(0.05) == pytest.approx(math.log(19))
    assert bayes_threshold(0.5) == 0.0
    llr = np.array([-3.0, 2.0, 3.0, -1.0, 2.944, 5.0])
    y = np.array([1, 1, 1, 0, 0, 0])
    # threshold 2.944: misses -3 and 2 (2 of 3 targets), accepts 5 (1 of 3 non-targets)
    expected = (0.05 * 2 / 3 + 0.95 * 1 / 3) / 0.05
    assert act_dcf(llr, y, 0.05) == pytest.approx(expected)
    s, y = gaussian_trials(N, N, seed=3)
    for p in (0.01, 0.05):
        best = min_dcf(s, y, p)
        assert act_dcf(2 * s - 2, y, p) >= best  # the minimum is over all thresholds
        assert act_dcf(2 * s - 2, y, p) == pytest.approx(best, abs=0.05)  # true LLR: ~optimal
        assert act_dcf(2 * s + 2, y, p) > best + 0.2  # a shifted one is not


def test_clear_errors():
    with pytest.raises(ValueError, match="prior"):
        fit_calibration([0.0, 1.0], [0, 1], prior=1.0)
    with pytest.raises(ValueError, match="both target and non-target"):
        min_cllr([0.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="p_target"):
        act_dcf([0.0, 1.0], [0, 1], 0.0)
