"""The rows that are not contrastive pretraining (leave_one_out/experiments/baselines.py) and the
same network at random init in the evaluation (leave_one_out/evaluate/random_init.py)."""

import jax
import numpy as np
import pytest

from leave_one_out import evaluate
from leave_one_out import pretrained
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.data import digits
from leave_one_out.experiments import baselines
from leave_one_out.run import checkpoints
from tests.helpers import tiny_config

pytest.importorskip("sklearn", reason="the digits source needs scikit-learn")
pytestmark = pytest.mark.xdist_group("test_baselines")


def digits_config(steps=4, seed=0):
  c = tiny_config(spaces=(), steps=steps)
  c.seed = seed
  c.data.name, c.data.image_size, c.data.eval_split = "digits", 20, "test"
  c.data.num_train = 128
  c.augment.rotation.enabled = False
  c.augment.flip.enabled = False
  c.model.dtype = "float32"
  return c


def _leaves_close(a, b) -> bool:
  return all(np.allclose(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_calibrated_statistics_make_evaluation_mode_reproduce_train_mode():
  cfg = digits_config()
  state, compiled = baselines.initial_state(cfg)
  model, images = compiled.model, digits.load("train", num_examples=32, image_size=20)["image"]
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  stats = baselines.calibrate_batch_stats(
    model, variables, images, cfg.augment, seed=4, batch_size=32
  )
  # The calibration batch's views (its first key), through train mode (batch statistics) and
  # through evaluation mode with the calibrated statistics: the same features.
  key = jax.random.fold_in(jax.random.PRNGKey(4), baselines.CALIBRATION_STREAM)
  views = baselines.one_view(jax.random.fold_in(key, 0), images, cfg.augment)
  train_mode, _ = model.apply(variables, views, train=True, mutable=["batch_stats"])
  calibrated = model.apply({**variables, "batch_stats": stats}, views, train=False)
  initial = model.apply(variables, views, train=False)
  np.testing.assert_allclose(calibrated["feature"], train_mode["feature"], rtol=1e-3, atol=1e-4)
  assert not np.allclose(initial["feature"], train_mode["feature"], rtol=0.1, atol=0.1)
  with pytest.raises(ValueError, match="at least one image"):
    baselines.calibrate_batch_stats(model, variables, images[:0], cfg.augment, seed=4)


def test_random_init_checkpoint_is_the_initialisation_with_calibrated_statistics(tmp_path):
  cfg = digits_config(seed=2)
  workdir = str(tmp_path / "init")
  assert baselines.save_random_init(cfg, workdir) == {"step": 0, "calibration_images": 128}
  model, variables, saved = pretrained.load_pretrained(workdir)
  init = train.programs(cfg, sharding.make_mesh(), 1).new_state(2)
  assert _leaves_close(variables["params"], init.params)  # no parameter update
  assert not _leaves_close(variables["batch_stats"], init.batch_stats)
  assert saved.to_json() == cfg.to_json()
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  meta = ckpt.restore_meta(0)
  ckpt.close()
  assert meta["baseline"].startswith("random init: BatchNorm statistics calibrated")
  assert baselines.save_random_init(cfg, workdir) == {"step": 0}  # already there


def test_supervised_training_updates_the_encoder_and_saves_a_standard_checkpoint(tmp_path):
  # Whether it learns the class is the claims experiment's gate G1 (a tiny network in a few
  # steps does not); here: the step trains the encoder and the run is a loadable checkpoint.
  cfg = digits_config(steps=6)
  workdir = str(tmp_path / "supervised")
  summary = baselines.train_supervised(cfg, workdir, "digit")
  assert summary["step"] == 6 and np.isfinite(summary["loss/supervised"])
  assert 0.0 <= summary["top1/supervised"] <= 1.0
  model, variables, saved = pretrained.load_pretrained(workdir)
  init = train.programs(cfg, sharding.make_mesh(), 1).new_state(0)
  assert not _leaves_close(variables["params"], init.params)
  ckpt = checkpoints.Checkpointer(workdir, async_save=False)
  meta = ckpt.restore_meta(6)
  ckpt.close()
  assert "cross-entropy on 'digit' (10 classes)" in meta["baseline"]
  assert baselines.train_supervised(cfg, workdir, "digit") == {"step": 6}  # already there
  other = digits_config(steps=6)
  other.train.base_lr = 1.0
  with pytest.raises(ValueError, match="different config"):
    baselines.train_supervised(other, workdir, "digit")
  with pytest.raises(ValueError, match="needs the label 'shape'"):
    baselines.train_supervised(cfg, str(tmp_path / "other"), "shape")


def test_the_evaluation_reports_the_same_network_at_random_init(tmp_path):
  cfg = digits_config(steps=6)
  workdir = str(tmp_path / "run")
  baselines.train_supervised(cfg, workdir, "digit")
  c = evaluate.default_config()
  c.random_init.enabled = True
  c.dataset.num_train, c.dataset.num_test = 200, 100
  c.dataset.labels = ("digit",)
  c.probe.steps = 50
  c.kinds = ("backbone",)
  for name in ("rotation", "knn", "fewshot", "corruption", "sensitivity"):
    c[name].enabled = False
  results = evaluate.run(workdir, c)
  r = results["random_init"]
  assert r["label"] == "digit" and r["calibration_images"] == 200
  # The trained number is the probe column's: the same features, protocol and seed.
  assert r["trained"] == results["rows"]["backbone"]["probe"]["digit"]["top1"]
  assert 0.0 <= r["init"] <= 1.0 and r["init"] != r["trained"]
  table = evaluate.format_table(results)
  assert f"random init: digit {100 * r['init']:.1f}% for the same network untrained" in table


def test_the_digits_eval_config_is_the_default_with_random_init():
  from leave_one_out import config as config_lib

  c = config_lib.load_file("configs/eval/digits.py")
  evaluate.validate_config(c)
  expected = evaluate.default_config()
  expected.random_init.enabled = True
  assert c.to_json() == expected.to_json()
