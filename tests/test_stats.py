"""Paired statistics of the claims experiment (leave_one_out/experiments/stats.py)."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from leave_one_out.experiments import stats

A = [0.87, 0.91, 0.91, 0.83, 0.84, 0.88]
B = [0.80, 0.85, 0.81, 0.78, 0.68, 0.86]


def test_paired_t_test_matches_the_textbook_formula_and_scipy():
  d = np.subtract(A, B)
  r = stats.paired_t_test(A, B, alternative="greater")
  assert r["n"] == 6 and r["df"] == 5
  assert r["mean_gap"] == pytest.approx(d.mean())
  assert r["sd_gap"] == pytest.approx(d.std(ddof=1))
  assert r["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(6)))
  for alternative in ("greater", "less", "two-sided"):
    expected = scipy_stats.ttest_rel(A, B, alternative=alternative).pvalue
    assert stats.paired_t_test(A, B, alternative=alternative)["p"] == pytest.approx(expected)


@pytest.mark.parametrize("t, p", [(2.0150, 0.05), (3.3649, 0.01), (5.8934, 0.001)])
def test_one_sided_p_values_match_a_t_table(t, p):
  # One-sided critical values of Student's t with 5 degrees of freedom (any printed table).
  noise = np.array([0.02, -0.01, 0.0, 0.01, -0.02, 0.0])
  gap = t * noise.std(ddof=1) / math.sqrt(6)
  b = np.array([0.5, 0.6, 0.7, 0.4, 0.55, 0.45])
  r = stats.paired_t_test(b + gap + noise, b, alternative="greater")
  assert r["t"] == pytest.approx(t)
  assert r["p"] == pytest.approx(p, rel=2e-3)


def test_a_margin_shifts_the_null_non_inferiority():
  # LooC 1 point below the reference on every seed, give or take: not better (p > 0.5), but
  # not more than 2 points worse either (the non-inferiority null, gap <= -2, is rejected).
  b = np.array([0.90, 0.85, 0.88, 0.92, 0.87, 0.89])
  a = b - 0.01 + np.array([0.002, -0.001, 0.0, 0.001, -0.002, 0.0])
  assert stats.paired_t_test(a, b, alternative="greater")["p"] > 0.5
  r = stats.paired_t_test(a, b, alternative="greater", margin=-0.02)
  assert r["margin"] == -0.02 and r["t"] > 10 and r["p"] < 1e-4
  same = scipy_stats.ttest_1samp(a - b, -0.02, alternative="greater")
  assert r["p"] == pytest.approx(same.pvalue) and r["t"] == pytest.approx(same.statistic)


def test_the_t_test_is_paired_not_two_sample():
  # A large shared seed effect hides the gap from an unpaired test but not from a paired one.
  seed_effect = np.array([0.1, 0.5, 0.9, 0.3, 0.7, 0.2])
  a, b = seed_effect + 0.02 + np.array([0, 1, -1, 1, -1, 0]) * 1e-3, seed_effect
  assert stats.paired_t_test(a, b, alternative="greater")["p"] < 1e-4
  assert scipy_stats.ttest_ind(a, b).pvalue > 0.5


def test_t_interval_and_bound():
  d = np.subtract(A, B)
  low, high = stats.t_interval(A, B)
  half = scipy_stats.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
  assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
  expected = scipy_stats.ttest_rel(A, B).confidence_interval(0.95)
  assert (low, high) == pytest.approx((expected.low, expected.high))
  bound = stats.t_bound(A, B, direction="greater")
  assert low < bound < d.mean()  # one-sided: tighter than the two-sided interval's end
  assert bound == pytest.approx(
    scipy_stats.ttest_rel(A, B, alternative="greater").confidence_interval(0.95).low
  )
  assert stats.t_bound(A, B, direction="less") == pytest.approx(2 * d.mean() - bound)
  wider = stats.t_interval(A, B, confidence=0.99)
  assert wider[0] < low and wider[1] > high


def test_holm_matches_the_step_down_rule():
  p = [0.01, 0.04, 0.03, 0.005, 0.5]
  # Sorted: 0.005 x5 = 0.025, 0.01 x4 = 0.04, 0.03 x3 = 0.09, 0.04 x2 = 0.08 -> 0.09 (monotone),
  # 0.5 x1 = 0.5.
  assert stats.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])
  assert stats.holm([0.3, 0.6]) == pytest.approx([0.6, 0.6])
  assert stats.holm([0.9, 0.8]) == [1.0, 1.0]  # capped
  assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []
  with pytest.raises(ValueError, match="p-values must be in"):
    stats.holm([0.1, 1.5])


def test_degenerate_differences():
  same = stats.paired_t_test([0.3, 0.4], [0.3, 0.4])
  assert same["t"] == 0.0 and same["p"] == 1.0
  shifted = stats.paired_t_test([0.5, 0.6], [0.4, 0.5], alternative="greater")
  assert shifted["t"] == math.inf and shifted["p"] == 0.0
  assert stats.paired_t_test([0.5, 0.6], [0.4, 0.5], alternative="less")["p"] == 1.0
  assert stats.t_interval([0.5, 0.6], [0.4, 0.5]) == pytest.approx((0.1, 0.1))


@pytest.mark.parametrize(
  "a, b, message",
  [
    ([0.1], [0.2], "at least 2 seeds"),
    ([0.1, 0.2], [0.2], "one value per seed"),
    ([0.1, float("nan")], [0.2, 0.3], "finite"),
  ],
)
def test_bad_samples_raise(a, b, message):
  with pytest.raises(ValueError, match=message):
    stats.paired_t_test(a, b)


def test_compare_collects_everything_and_rejects_unknown_directions():
  r = stats.compare(A, B, direction="greater")
  assert r["alternative"] == "greater" and r["ci"][0] < r["bound"] < r["mean_gap"] < r["ci"][1]
  assert r["p"] < 0.05 and r["confidence"] == 0.95
  assert "bound" not in stats.compare(A, B, direction="two-sided")
  with pytest.raises(ValueError, match="alternative"):
    stats.compare([0.1, 0.2], [0.0, 0.1], direction="up")
  with pytest.raises(ValueError, match="confidence"):
    stats.t_interval(A, B, confidence=1.0)
