"""Paired statistics for seed-matched comparisons: t-tests, t intervals, Holm's correction.

Every comparison in the claims experiment pairs two rows by seed: the same seed gives both the
same initialisation, data order, augmentation draws and probe data, so the per-seed difference
``d_s = a_s - b_s`` removes the variance they share. With n seeds:

- ``paired_t_test``: Student's t of the mean difference against a ``margin`` (0 for "a > b";
  -0.02 for a non-inferiority test "a is not more than 2 points below b"), n - 1 degrees of
  freedom, ``t = (mean(d) - margin) / (sd(d) / sqrt(n))``; p one-sided ("greater": H0 is
  mean(d) <= margin; "less": mean(d) >= margin) or two-sided. Quantiles from scipy's t
  distribution (scipy is a dependency of jax, so it is always installed).
- ``t_interval``: the two-sided t confidence interval of mean(d); ``t_bound``: the one-sided
  bound (lower for "greater", upper for "less"). At n = 6 they are the honest width: a
  bootstrap of 6 values is too narrow.
- ``holm``: Holm's step-down adjusted p-values of a family of tests; rejecting where the
  adjusted p < alpha controls the family-wise error rate at alpha.
- ``compare``: one hypothesis, everything above but the correction (``claims.analyse`` applies
  it over the family).

All inputs are sequences of floats, one per seed, in the same seed order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as scipy_stats

ALTERNATIVES = ("greater", "less", "two-sided")
DIRECTIONS = ("greater", "less")  # a pre-registered hypothesis predicts one side


def _paired(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
  """Per-seed differences a - b, float64 [n]; ValueError unless both have the same n >= 2."""
  a = np.asarray(a, np.float64).reshape(-1)
  b = np.asarray(b, np.float64).reshape(-1)
  if a.shape != b.shape:
    raise ValueError(
      f"paired samples need one value per seed on both sides, got {a.size} and {b.size}"
    )
  if a.size < 2:
    raise ValueError(f"a paired test needs at least 2 seeds, got {a.size}")
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    raise ValueError("paired samples must be finite numbers")
  return a - b


def _check(alternative: str, confidence: float = 0.5) -> None:
  if alternative not in ALTERNATIVES:
    raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def paired_t_test(
  a: Sequence[float],
  b: Sequence[float],
  *,
  alternative: str = "two-sided",
  margin: float = 0.0,
) -> dict:
  """Paired t-test of mean(a - b) against ``margin``.

  Returns:
    {"n", "mean_gap", "sd_gap" (sample sd of the differences), "se", "t", "df", "p",
    "alternative", "margin"}. Differences that are all equal have no spread: t is +-inf (p 0 or
    1), or 0 when they equal the margin.
  """
  _check(alternative)
  d = _paired(a, b)
  n = d.size
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  se = sd / math.sqrt(n)
  excess = mean - float(margin)
  if se == 0.0:
    t = 0.0 if excess == 0.0 else math.copysign(math.inf, excess)
  else:
    t = excess / se
  dist = scipy_stats.t(df=n - 1)
  if alternative == "greater":
    p = float(dist.sf(t))
  elif alternative == "less":
    p = float(dist.cdf(t))
  else:
    p = float(min(1.0, 2.0 * dist.sf(abs(t))))
  return {
    "n": int(n),
    "mean_gap": mean,
    "sd_gap": sd,
    "se": se,
    "t": float(t),
    "df": int(n - 1),
    "p": p,
    "alternative": alternative,
    "margin": float(margin),
  }


def t_interval(
  a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95
) -> tuple[float, float]:
  """The two-sided t confidence interval of mean(a - b): (low, high)."""
  _check("two-sided", confidence)
  d = _paired(a, b)
  half = scipy_stats.t(df=d.size - 1).ppf(0.5 + confidence / 2) * d.std(ddof=1) / math.sqrt(d.size)
  return float(d.mean() - half), float(d.mean() + half)


def t_bound(
  a: Sequence[float], b: Sequence[float], *, direction: str, confidence: float = 0.95
) -> float:
  """The one-sided t confidence bound of mean(a - b): lower for "greater", upper for "less"."""
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
  _check(direction, confidence)
  d = _paired(a, b)
  width = scipy_stats.t(df=d.size - 1).ppf(confidence) * d.std(ddof=1) / math.sqrt(d.size)
  return float(d.mean() - width if direction == "greater" else d.mean() + width)


def holm(pvalues: Sequence[float]) -> list[float]:
  """Holm's step-down adjusted p-values, in the input order.

  Sorted ascending, the i-th smallest of m (from 0) is multiplied by m - i, the running maximum
  is kept (an adjusted p never falls below a smaller raw p's), and the result is capped at 1.
  """
  p = np.asarray(pvalues, np.float64).reshape(-1)
  if p.size == 0:
    return []
  if not np.all((p >= 0) & (p <= 1)):
    raise ValueError(f"p-values must be in [0, 1], got {p.tolist()}")
  order = np.argsort(p, kind="stable")
  m = p.size
  adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
  out = np.empty(m)
  out[order] = np.minimum(adjusted, 1.0)
  return [float(x) for x in out]


def compare(
  a: Sequence[float],
  b: Sequence[float],
  *,
  direction: str,
  margin: float = 0.0,
  confidence: float = 0.95,
) -> dict:
  """One hypothesis "mean(a - b) > margin" ("greater"), "< margin" ("less"), or an
  exploratory comparison ("two-sided").

  Returns:
    ``paired_t_test``'s fields, "ci" ([low, high], the two-sided ``t_interval``) and, for a
    one-sided test, "bound" (``t_bound``).
  """
  out = paired_t_test(a, b, alternative=direction, margin=margin)
  out["ci"] = list(t_interval(a, b, confidence=confidence))
  out["confidence"] = float(confidence)
  if direction in DIRECTIONS:
    out["bound"] = t_bound(a, b, direction=direction, confidence=confidence)
  return out
