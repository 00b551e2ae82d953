"""Paired statistics for seed-matched comparisons: t-test, bootstrap CI, verdict.

Every comparison in the claims experiment pairs two methods by seed: the same seed gives both
the same initialisation, data order, augmentation draws and probe data, so the per-seed
difference ``d_s = a_s - b_s`` removes the variance they share. For a hypothesis
"``a`` > ``b`` on metric m" (or "<"), fixed in configs/claims.py before any run:

- ``paired_t_test``: Student's t on the differences, ``t = mean(d) / (sd(d) / sqrt(n))`` with
  n - 1 degrees of freedom; the two-sided p-value comes from scipy's t distribution (scipy is a
  dependency of jax, so it is always installed).
- ``bootstrap_ci``: percentile bootstrap of mean(d): resample the n seeds with replacement,
  deterministic from its seed.
- ``verdict``: "confirmed" when p < alpha and the mean gap has the predicted sign,
  "contradicted" when p < alpha and it has the other sign, else "not shown".

All inputs are sequences of floats, one per seed, in the same seed order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

DIRECTIONS = ("greater", "less")
VERDICTS = ("confirmed", "contradicted", "not shown")


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


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """Two-sided paired t-test of mean(a - b) = 0.

  Returns:
    {"n", "mean_gap", "sd_gap" (sample standard deviation of the differences), "t", "df",
    "p" (two-sided)}. Differences that are all equal give t = +-inf and p = 0, or, when they
    are all zero, t = 0 and p = 1.
  """
  d = _paired(a, b)
  n = d.size
  mean, sd = float(d.mean()), float(d.std(ddof=1))
  if sd == 0.0:
    t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    p = 1.0 if mean == 0.0 else 0.0
  else:
    t = mean / (sd / math.sqrt(n))
    from scipy import stats as scipy_stats  # local: about 1 s to import, paid only here

    p = float(2.0 * scipy_stats.t.sf(abs(t), df=n - 1))
  return {"n": int(n), "mean_gap": mean, "sd_gap": sd, "t": float(t), "df": int(n - 1), "p": p}


def bootstrap_ci(
  a: Sequence[float],
  b: Sequence[float],
  *,
  confidence: float = 0.95,
  resamples: int = 10_000,
  seed: int = 0,
) -> tuple[float, float]:
  """Percentile bootstrap confidence interval of mean(a - b) over seeds.

  Args:
    a, b: one value per seed each, same seed order.
    confidence: coverage of the interval, in (0, 1).
    resamples: bootstrap resamples (each draws n seeds with replacement).
    seed: numpy seed of the resampling, so the interval is reproducible.

  Returns:
    (low, high).
  """
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
  if not isinstance(resamples, int) or resamples < 1:
    raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
  d = _paired(a, b)
  idx = np.random.default_rng(seed).integers(0, d.size, (resamples, d.size))
  means = d[idx].mean(axis=1)
  tail = 100.0 * (1.0 - confidence) / 2.0
  low, high = np.percentile(means, [tail, 100.0 - tail])
  return float(low), float(high)


def verdict(mean_gap: float, p: float, direction: str, alpha: float) -> str:
  """ "confirmed", "contradicted" or "not shown" for a predicted ``direction`` of a - b."""
  if direction not in DIRECTIONS:
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
  if not p < alpha or mean_gap == 0.0:
    return "not shown"
  predicted = mean_gap > 0 if direction == "greater" else mean_gap < 0
  return "confirmed" if predicted else "contradicted"


def compare(
  a: Sequence[float],
  b: Sequence[float],
  *,
  direction: str,
  alpha: float = 0.05,
  confidence: float = 0.95,
  resamples: int = 10_000,
  seed: int = 0,
) -> dict:
  """The whole pre-registered analysis of one hypothesis "a <direction> b".

  Returns:
    ``paired_t_test``'s fields plus "ci" ([low, high], ``bootstrap_ci``), "direction",
    "alpha" and "verdict".
  """
  out = paired_t_test(a, b)
  out["ci"] = list(bootstrap_ci(a, b, confidence=confidence, resamples=resamples, seed=seed))
  out["direction"] = direction
  out["alpha"] = float(alpha)
  out["verdict"] = verdict(out["mean_gap"], out["p"], direction, alpha)
  return out
