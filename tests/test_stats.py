"""Paired statistics of the claims experiment (leave_one_out/experiments/stats.py)."""

import math

import numpy as np
import pytest

from leave_one_out.experiments import stats


def test_paired_t_test_matches_the_textbook_formula():
  a = [0.87, 0.91, 0.91, 0.83, 0.84]
  b = [0.80, 0.85, 0.81, 0.78, 0.68]
  d = np.subtract(a, b)
  r = stats.paired_t_test(a, b)
  assert r["n"] == 5 and r["df"] == 4
  assert r["mean_gap"] == pytest.approx(d.mean())
  assert r["sd_gap"] == pytest.approx(d.std(ddof=1))
  assert r["t"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(5)))


@pytest.mark.parametrize("t, p", [(2.7764, 0.05), (4.6041, 0.01), (8.6103, 0.001)])
def test_p_values_match_a_t_table(t, p):
  # Two-sided critical values of Student's t with 4 degrees of freedom (any printed table).
  noise = np.array([0.02, -0.01, 0.0, 0.01, -0.02])
  gap = t * noise.std(ddof=1) / math.sqrt(5)
  b = np.array([0.5, 0.6, 0.7, 0.4, 0.55])
  r = stats.paired_t_test(b + gap + noise, b)
  assert r["t"] == pytest.approx(t)
  assert r["p"] == pytest.approx(p, rel=2e-3)


def test_the_t_test_is_paired_not_two_sample():
  # A large shared seed effect hides the gap from an unpaired test but not from a paired one.
  seed_effect = np.array([0.1, 0.5, 0.9, 0.3, 0.7])
  a, b = seed_effect + 0.02 + np.array([0, 1, -1, 1, -1]) * 1e-3, seed_effect
  assert stats.paired_t_test(a, b)["p"] < 1e-4
  from scipy import stats as scipy_stats

  assert scipy_stats.ttest_ind(a, b).pvalue > 0.5


def test_symmetry_and_degenerate_differences():
  a, b = [0.5, 0.7, 0.6], [0.4, 0.5, 0.65]
  r, s = stats.paired_t_test(a, b), stats.paired_t_test(b, a)
  assert r["p"] == pytest.approx(s["p"]) and r["t"] == pytest.approx(-s["t"])
  same = stats.paired_t_test([0.3, 0.4], [0.3, 0.4])
  assert same["t"] == 0.0 and same["p"] == 1.0
  shifted = stats.paired_t_test([0.5, 0.6], [0.4, 0.5])
  assert shifted["t"] == math.inf and shifted["p"] == 0.0


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


def test_bootstrap_ci_brackets_the_mean_gap_and_is_reproducible():
  rng = np.random.default_rng(0)
  b = rng.uniform(0.4, 0.6, 8)
  a = b + rng.normal(0.1, 0.03, 8)
  low, high = stats.bootstrap_ci(a, b, seed=3)
  gap = float(np.mean(a - b))
  assert low < gap < high
  assert high - low < 0.1
  assert (low, high) == stats.bootstrap_ci(a, b, seed=3)
  wider = stats.bootstrap_ci(a, b, confidence=0.99, seed=3)
  assert wider[0] <= low and wider[1] >= high
  # The interval stays inside the range of the per-seed differences.
  assert low >= np.min(a - b) and high <= np.max(a - b)
  with pytest.raises(ValueError, match="confidence"):
    stats.bootstrap_ci(a, b, confidence=1.0)


@pytest.mark.parametrize(
  "gap, p, direction, expected",
  [
    (0.05, 0.01, "greater", "confirmed"),
    (-0.05, 0.01, "greater", "contradicted"),
    (0.05, 0.2, "greater", "not shown"),
    (-0.05, 0.01, "less", "confirmed"),
    (0.05, 0.05, "greater", "not shown"),  # the threshold is strict: p < alpha
  ],
)
def test_verdict(gap, p, direction, expected):
  assert stats.verdict(gap, p, direction, 0.05) == expected


def test_compare_collects_everything_and_rejects_unknown_directions():
  r = stats.compare([0.9, 0.8, 0.85, 0.95, 0.9], [0.7, 0.75, 0.6, 0.8, 0.72], direction="greater")
  assert r["verdict"] == "confirmed" and r["direction"] == "greater" and r["alpha"] == 0.05
  assert r["ci"][0] > 0 and r["p"] < 0.05
  with pytest.raises(ValueError, match="direction"):
    stats.compare([0.1, 0.2], [0.0, 0.1], direction="up")
