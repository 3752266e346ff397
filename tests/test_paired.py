"""Paired bootstrap differences and Holm's correction (lowres.scoring.paired)."""

import numpy as np
import pytest

from lowres.scoring.paired import bootstrap_p, holm, paired_difference


def test_holm_on_known_p_values():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.2, 0.6]) == pytest.approx([0.4, 0.6])
    assert holm([0.7, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.04]) == [0.04]


def test_bootstrap_p_counts_both_sides_and_is_never_zero():
    assert bootstrap_p(np.zeros(999)) == 1.0  # no difference in any draw
    assert bootstrap_p(np.full(999, 0.5)) == pytest.approx(2 / 1000)
    d = np.concatenate([np.full(30, -1.0), np.full(970, 1.0)])
    assert bootstrap_p(d) == pytest.approx(2 * 31 / 1001)
    assert bootstrap_p(np.append(d, np.nan)) == bootstrap_p(d)  # draws without a class
    with pytest.raises(ValueError, match="no draw"):
        bootstrap_p(np.full(3, np.nan))


def test_paired_difference_is_of_the_same_draws():
    rng = np.random.default_rng(0)
    hard = rng.normal(10.0, 3.0, 1000)  # how hard each draw's speakers are, for both
    a, b = hard - 1.0 + rng.normal(0, 0.1, 1000), hard + rng.normal(0, 0.1, 1000)
    res = paired_difference(a, b, 9.0, 10.0, 0.95)
    assert res.diff == -1.0 and res.interval.high < 0 and res.p == pytest.approx(2 / 1001)
    # unpaired, the spread of the speakers would hide it
    assert np.percentile(a, 97.5) > np.percentile(b, 2.5)
    with pytest.raises(ValueError, match="not the same draws"):
        paired_difference(a, b[:10], 9.0, 10.0, 0.95)
