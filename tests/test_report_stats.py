"""The report's statistics against values worked out by hand: t-intervals, paired t-tests, BH adjustment."""

import math

import pytest

from skipexp.report.stats import adjusted_p, describe, paired, t_interval


def test_t_interval_by_hand():
    # [1, 2, 3]: mean 2, sd 1, sem 1/sqrt(3); t(0.975, 2 df) = 4.302653
    interval = t_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert interval.mean == pytest.approx(2.0) and interval.n == 3
    assert interval.low == pytest.approx(2 - half, abs=1e-5) and interval.high == pytest.approx(2 + half, abs=1e-5)
    # two values: 1 df, t = 12.7062; sd = 0.7071, sem = 0.5
    two = t_interval([0.5, 1.5])
    assert two.low == pytest.approx(1 - 12.7062 * 0.5, abs=1e-3) and two.high == pytest.approx(1 + 6.3531, abs=1e-3)
    one = t_interval([0.7])
    assert one.mean == 0.7 and one.low is None and one.high is None
    assert t_interval([]) is None
    assert t_interval([0.5, 0.5, 0.5]).low == 0.5  # no spread: the interval is the point


def test_paired_t_test_by_hand():
    # differences [0.5, 1, 2]: mean 7/6, sd sqrt(7/12), t = mean / (sd / sqrt 3) = sqrt(7) = 2.64575;
    # with 2 df the two-sided p is 1 - t / sqrt(2 + t^2) = 1 - sqrt(7) / 3
    c = paired("both", "none", {0: 1.0, 1: 2.0, 2: 4.0, 7: 9.0}, {0: 0.5, 1: 1.0, 2: 2.0, 5: 0.0})
    assert c.seeds == (0, 1, 2) and c.differences == (0.5, 1.0, 2.0)  # seeds 5 and 7 have no partner
    assert c.interval.mean == pytest.approx(7 / 6)
    assert c.p_value == pytest.approx(1 - math.sqrt(7) / 3, abs=1e-9) and not c.significant
    half = 4.302653 * math.sqrt(7 / 12) / math.sqrt(3)
    assert c.interval.low == pytest.approx(7 / 6 - half, abs=1e-5)
    words = describe(c, "final V_rand", 26)
    assert words.startswith("depth 26, final V_rand: both − none = +1.167 (95% CI ")
    assert "p = 0.118, 3 seeds): not significant at 0.05." in words


def test_paired_edge_cases():
    strong = paired("both", "none", {0: 0.9, 1: 0.92, 2: 0.91}, {0: 0.5, 1: 0.51, 2: 0.515})
    assert strong.significant and strong.p_value < 0.001
    assert paired("a", "b", {0: 1.0}, {0: 0.5}).p_value is None
    assert "one seed only" in describe(paired("a", "b", {0: 1.0}, {0: 0.5}), "Dice", 26)
    assert "no seed has both runs" in describe(paired("a", "b", {0: 1.0}, {1: 0.5}), "Dice", 26)
    assert paired("a", "b", {0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p_value == 1.0  # identical: no difference at all


def test_benjamini_hochberg_by_hand():
    # sorted p 0.01, 0.03, 0.04, 0.2 (m = 4): 0.01*4/1 = 0.04; 0.03*4/2 = 0.06 -> min(0.06, 0.04*4/3) = 0.0533...
    assert adjusted_p([0.01, None, 0.04, 0.03, 0.2]) == pytest.approx([0.04, None, 4 * 0.04 / 3, 4 * 0.04 / 3, 0.2])
    assert adjusted_p([None]) == [None]
