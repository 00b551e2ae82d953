"""Probes, corruptions, augmentation sensitivity and the evaluate command, on tiny inputs."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leave_one_out import augment
from leave_one_out import corruptions
from leave_one_out import config as config_lib
from leave_one_out import evaluate
from leave_one_out import probes
from leave_one_out import synthetic
from tests.helpers import tiny_config
from tests.test_pretrained import write_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blobs(n, num_classes=4, dim=16, seed=0):
  """Well-separated Gaussian clusters: features [n, dim], labels [n]."""
  rng = np.random.default_rng(seed)
  centres = np.random.default_rng(123).normal(size=(num_classes, dim)) * 3
  y = rng.integers(0, num_classes, n)
  return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int32)


# ------------------------------------------------------------------------------------ probes


def test_probes_separable_and_shuffled():
  xtr, ytr = _blobs(400)
  xte, yte = _blobs(1000, seed=1)
  lin = probes.linear_probe(xtr, ytr, xte, yte, 4, steps=100)
  knn = probes.knn_probe(xtr, ytr, xte, yte, 4)
  assert lin["top1"] > 0.97 and knn["top1"] > 0.97
  assert lin["top5"] == 1.0 and len(lin["val_top1"]) == 5 and lin["l2"] in lin["l2_grid"]
  # Labels that carry no information about the features (train and test): chance level.
  rng = np.random.default_rng(2)
  ytr_s, yte_s = rng.permutation(ytr), rng.permutation(yte)
  lin = probes.linear_probe(xtr, ytr_s, xte, yte_s, 4, steps=100)
  knn = probes.knn_probe(xtr, ytr_s, xte, yte_s, 4)
  assert abs(lin["top1"] - 0.25) < 0.06 and abs(knn["top1"] - 0.25) < 0.06, (lin, knn)


def test_knn_votes_by_hand():
  bank = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
  labels = np.array([0, 1, 1, 2])
  scores = probes.knn_scores(bank, labels, np.array([[1, 0.05]], np.float32), 3, k=2,
                             temperature=0.5)
  unit = lambda v: v / np.linalg.norm(v)
  q = unit(np.array([1, 0.05]))
  expected = [np.exp(q @ unit(bank[0]) / 0.5), np.exp(q @ unit(bank[1]) / 0.5), 0.0]
  np.testing.assert_allclose(scores[0], expected, rtol=1e-5)


def test_mean_ci95_and_few_shot():
  mean, ci = probes.mean_ci95([0.5, 0.6, 0.7])
  # t_{0.975, 2} = 4.302653; s = 0.1; n = 3.
  assert mean == pytest.approx(0.6) and ci == pytest.approx(4.302653 * 0.1 / math.sqrt(3))
  assert math.isnan(probes.mean_ci95([0.3])[1])

  xtr, ytr = _blobs(200)
  xte, yte = _blobs(300, seed=1)
  idx = probes.sample_few_shot(ytr, 4, shots=5, trials=3, seed=0)
  assert idx.shape == (3, 20)
  for row in idx:
    assert len(set(row)) == 20
    np.testing.assert_array_equal(np.bincount(ytr[row], minlength=4), [5, 5, 5, 5])
  r = probes.few_shot(xtr, ytr, xte, yte, 4, shots=5, trials=4, steps=60)
  assert len(r["accuracies"]) == 4 and r["mean"] > 0.95
  m, c = probes.mean_ci95(r["accuracies"])
  assert (r["mean"], r["ci95"]) == (m, c)
  again = probes.few_shot(xtr, ytr, xte, yte, 4, shots=5, trials=4, steps=60)
  assert again["accuracies"] == r["accuracies"]  # deterministic given the seed
  with pytest.raises(ValueError, match="needs 500 examples"):
    probes.sample_few_shot(ytr, 4, shots=500, trials=1)


# ------------------------------------------------------------------------------------ corruptions


def test_corruptions_every_family_and_severity():
  x = synthetic.load("test", num_examples=4, image_size=16)["image"].astype(np.float32) / 255
  key = jax.random.key(0, impl="rbg")
  assert set(corruptions.FAMILIES) == {"noise", "blur", "weather", "digital"}
  for name in corruptions.CORRUPTIONS:
    outs = [np.asarray(corruptions.corrupt_jit(x, name, s, key)) for s in (1, 5)]
    for y in outs:
      assert y.shape == x.shape and y.dtype == np.float32, name
      assert 0.0 <= y.min() and y.max() <= 1.0, name
    d1, d5 = (np.abs(y - x).mean() for y in outs)
    assert d1 > 0 and d5 > 0, name
    if name != "saturate":  # ImageNet-C's saturate desaturates at 1-2, oversaturates at 3-5
      assert d5 > d1, (name, d1, d5)
  np.testing.assert_array_equal(corruptions.corrupt_jit(x, "gaussian_noise", 3, key),
                                corruptions.corrupt_jit(x, "gaussian_noise", 3, key))
  with pytest.raises(ValueError, match="unknown corruption 'frost'"):
    corruptions.corrupt(x, "frost", 1, key)
  with pytest.raises(ValueError, match="severity"):
    corruptions.corrupt(x, "fog", 6, key)


# ------------------------------------------------------------------------------------ sensitivity


class KnownInvariances(nn.Module):
  """A parameter-free "LooC model" whose invariances are known by construction.

  Space 0: moments of the per-pixel max and min over channels: invariant to hue shifts (they
  keep max and min), to flips and rotations (they permute pixels). Space 1 ("color"): moments
  of each channel: sensitive to hue, invariant to flips and rotations. Space 2 ("rotation"): the
  row profile of the per-pixel max, symmetrised top-bottom: invariant to hue and to horizontal
  and vertical flips (a horizontal flip before a 90-degree turn is a vertical one after it),
  but a quarter turn swaps it for the column profile.
  """
  num_spaces: int = 3
  looc_plus_plus: bool = False

  @nn.compact
  def __call__(self, x, train=False):
    del train
    hi, lo = x.max(-1), x.min(-1)  # [B, S, S]
    moments = lambda v: jnp.stack([((v - 0.5) ** p).mean((1, 2)) for p in (1, 2, 3)], -1)
    z = [jnp.concatenate([moments(hi), moments(lo)], -1),
         jnp.concatenate([moments(x[..., c]) for c in range(3)], -1),
         (hi.mean(axis=2) + hi.mean(axis=2)[:, ::-1]) / 2 - 0.5]
    dim = max(v.shape[-1] for v in z)
    z = jnp.stack([jnp.pad(v, ((0, 0), (0, dim - v.shape[-1]))) for v in z], axis=1)
    z = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return {"feature": z[:, 0], "space_features": z, "embeddings": z}


def test_sensitivity_of_a_model_with_known_invariances(tmp_path):
  cfg = augment.default_config()
  cfg.image_size = 16
  cfg.spaces = ("color", "rotation")
  cfg.crop.enabled = cfg.blur.enabled = False
  cfg.color.update(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5, gray_prob=0.0)
  images = synthetic.load("test", num_examples=32, image_size=16)["image"]
  kinds = ("embedding:0", "embedding:1", "embedding:2")
  s = evaluate.augmentation_sensitivity(KnownInvariances(), {}, images, cfg, kinds=kinds)
  assert s["columns"] == ["flip", "color", "rotation"] and s["rows"] == list(kinds)
  m = np.asarray(s["matrix"])
  sensitive = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1]], bool)  # rows: spaces; cols: flip,
  assert np.all(m[~sensitive] < 1e-3), m  # colour, rotation
  assert np.all(m[sensitive] > 0.05), m
  evaluate.plot_sensitivity(s, str(tmp_path / "s.png"))
  assert os.path.getsize(tmp_path / "s.png") > 1000


# ------------------------------------------------------------------------------------ evaluate


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("evaluate") / "run")
  write_checkpoint(path, tiny_config())
  return path


def tiny_eval_config():
  c = evaluate.default_config()
  c.dataset.num_train, c.dataset.num_test = 120, 60
  c.probe.steps, c.probe.l2_grid = 20, (0.0, 1e-2)
  c.rotation.num_train, c.rotation.num_test = 24, 12
  c.fewshot.shots, c.fewshot.trials, c.fewshot.steps = (2, 3), 3, 20
  c.corruption.names, c.corruption.severities = ("gaussian_noise", "contrast"), (1, 5)
  c.corruption.num_images = 24
  c.sensitivity.num_images = 16
  c.online.num_train, c.online.num_test = 60, 30
  return c


def test_evaluate_run_writes_results_and_table(workdir):
  results = evaluate.run(workdir, tiny_eval_config())
  with open(os.path.join(workdir, "evaluation.json")) as f:
    saved = json.load(f)
  assert saved["rows"].keys() == results["rows"].keys()
  kinds = ["backbone", "embedding:0", "embedding:1", "embedding:2"]
  assert results["kinds"] == kinds and results["step"] == 3
  for kind in kinds:
    row = results["rows"][kind]
    accuracies = [row["probe"][l]["top1"] for l in ("shape", "color", "texture")] + [
        row["rotation"]["top1"], row["knn"]["shape"]["top1"], row["fewshot"]["2"]["mean"],
        row["corruption"]["mean"], row["corruption"]["clean"]]
    assert all(0.0 <= a <= 1.0 for a in accuracies), (kind, accuracies)
    assert sorted(row["corruption"]["by_corruption"]) == ["contrast", "gaussian_noise"]
    assert sorted(row["corruption"]["by_family"]) == ["digital", "noise"]
    assert len(row["fewshot"]["3"]["accuracies"]) == 3
  s = results["sensitivity"]
  assert s["columns"] == ["crop", "flip", "blur", "color", "rotation"]
  assert np.asarray(s["matrix"]).shape == (4, 5)
  assert os.path.getsize(os.path.join(workdir, "sensitivity.png")) > 1000
  table = evaluate.format_table(results)
  for text in ("| features", "shape", "color", "texture", "rotation", "kNN shape", "2-shot",
               "3-shot", "corrupt", "embedding:1 (color)", "embedding:2 (rotation)", "chance"):
    assert text in table, text
  assert evaluate.format_table(saved) == table  # the JSON alone reproduces the table


def test_online_knn_accuracy(workdir):
  from leave_one_out import pretrained
  model, variables, cfg = pretrained.load_pretrained(workdir)
  acc = evaluate.online_knn_accuracy(model, variables, cfg, tiny_eval_config())
  assert isinstance(acc, float) and 0.0 <= acc <= 1.0


def test_config_file_and_errors(workdir, tmp_path):
  loaded = config_lib.load_file(os.path.join(REPO, "configs", "eval", "synthetic.py"))
  assert loaded.to_json() == evaluate.default_config().to_json()

  c = evaluate.default_config()
  c.dataset.name = "imagenet100"
  with pytest.raises(ValueError, match="dataset.name 'imagenet100' is not available.*synthetic"):
    evaluate.run(workdir, c)
  c = evaluate.default_config()
  c.dataset.primary_label = "size"
  with pytest.raises(ValueError, match="primary_label"):
    evaluate.run(workdir, c)
  c = evaluate.default_config()
  c.corruption.source = "imagenet2012_corrupted"
  c.corruption.tfds_data_dir = str(tmp_path / "tfds")
  with pytest.raises(ValueError, match="ImageNet-C .* is not prepared.*never downloads"):
    evaluate.run(workdir, c)
  assert not os.path.exists(tmp_path / "tfds" / "downloads")
