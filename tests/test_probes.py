"""Probes on frozen features (leave_one_out.evaluate.lib.classifiers): linear, kNN, few-shot, on tiny arrays."""

import math

import numpy as np
import pytest

from leave_one_out.evaluate.lib import classifiers


def blobs(n, num_classes=4, dim=16, seed=0):
  """Well-separated Gaussian clusters: features [n, dim], labels [n]."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(123).normal(size=(num_classes, dim)) * 3
  y = rng.integers(0, num_classes, n)
  return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int32)


def test_probes_separable_and_shuffled():
  xtr, ytr = blobs(400)
  xte, yte = blobs(1000, seed=1)
  lin = classifiers.linear_probe(xtr, ytr, xte, yte, 4, steps=100)
  knn = classifiers.knn_probe(xtr, ytr, xte, yte, 4)
  assert lin["top1"] > 0.97 and knn["top1"] > 0.97
  assert lin["top5"] == 1.0 and len(lin["val_top1"]) == 5 and lin["l2"] in lin["l2_grid"]
  # Labels that carry no information about the features (train and test): chance level.
  rng = np.random.default_rng(2)
  ytr_s, yte_s = rng.permutation(ytr), rng.permutation(yte)
  lin = classifiers.linear_probe(xtr, ytr_s, xte, yte_s, 4, steps=100)
  knn = classifiers.knn_probe(xtr, ytr_s, xte, yte_s, 4)
  assert abs(lin["top1"] - 0.25) < 0.06 and abs(knn["top1"] - 0.25) < 0.06, (lin, knn)


def test_held_out_split_is_drawn_by_group():
  # 100 images with random labels, each present 4 times (like the four rotations of an image).
  # Holding out single copies lets a classifier that memorises the fitted copies score on the
  # held-out ones; holding out whole images leaves it at chance.
  rng = np.random.default_rng(0)
  x = np.tile(rng.normal(size=(100, 128)).astype(np.float32), (4, 1))
  y = np.tile(rng.integers(0, 4, 100), 4).astype(np.int32)
  groups = np.tile(np.arange(100), 4)
  kw = dict(l2_grid=(0.0, 1e-4), steps=150, lr=0.05)
  leaky = classifiers.linear_probe(x, y, x[:8], y[:8], 4, **kw)
  grouped = classifiers.linear_probe(x, y, x[:8], y[:8], 4, groups=groups, **kw)
  assert min(leaky["val_top1"]) > 0.9, leaky["val_top1"]
  assert max(grouped["val_top1"]) < 0.5, grouped["val_top1"]
  with pytest.raises(ValueError, match=r"groups must be \[400\]"):
    classifiers.linear_probe(x, y, x, y, 4, groups=groups[:10], **kw)


def test_knn_votes_by_hand():
  bank = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
  labels = np.array([0, 1, 1, 2])
  scores = classifiers.knn_scores(
    bank, labels, np.array([[1, 0.05]], np.float32), 3, k=2, temperature=0.5
  )
  unit = lambda v: v / np.linalg.norm(v)
  q = unit(np.array([1, 0.05]))
  expected = [np.exp(q @ unit(bank[0]) / 0.5), np.exp(q @ unit(bank[1]) / 0.5), 0.0]
  np.testing.assert_allclose(scores[0], expected, rtol=1e-5)


def test_mean_ci95_and_few_shot():
  mean, ci = classifiers.mean_ci95([0.5, 0.6, 0.7])
  # t_{0.975, 2} = 4.302653; s = 0.1; n = 3.
  assert mean == pytest.approx(0.6) and ci == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
  assert math.isnan(classifiers.mean_ci95([0.3])[1])

  xtr, ytr = blobs(200)
  xte, yte = blobs(300, seed=1)
  idx = classifiers.sample_few_shot(ytr, 4, shots=5, trials=3, seed=0)
  assert idx.shape == (3, 20)
  for row in idx:
    assert len(set(row)) == 20
    np.testing.assert_array_equal(np.bincount(ytr[row], minlength=4), [5, 5, 5, 5])
  r = classifiers.few_shot(xtr, ytr, xte, yte, 4, shots=5, trials=4, steps=60)
  assert len(r["accuracies"]) == 4 and r["mean"] > 0.95
  m, c = classifiers.mean_ci95(r["accuracies"])
  assert (r["mean"], r["ci95"]) == (m, c)
  again = classifiers.few_shot(xtr, ytr, xte, yte, 4, shots=5, trials=4, steps=60)
  assert again["accuracies"] == r["accuracies"]  # deterministic given the seed
  with pytest.raises(ValueError, match="needs 500 examples"):
    classifiers.sample_few_shot(ytr, 4, shots=500, trials=1)
