"""The sharded train step and the training loop."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from leave_one_out import input_pipeline
from leave_one_out import metrics_log
from leave_one_out import train
from tests.helpers import tiny_config


def _setup(cfg, devices):
  mesh = train.make_mesh(devices)
  model = train.build_model(cfg)
  source = input_pipeline.create_train_source(cfg)
  num_steps = train.total_steps(cfg, source.steps_per_epoch)
  tx, schedule = train.create_optimizer(cfg, source.steps_per_epoch)
  state = train.create_state(cfg, model, tx, mesh)
  step = train.compile_train_step(cfg, model, tx, mesh, schedule, num_steps)
  sharding = NamedSharding(mesh, P(train.DATA_AXIS))
  batch = lambda i: jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), source.batch(i))
  return state, step, batch


def _run(cfg, devices, steps):
  state, step, batch = _setup(cfg, devices)
  out = []
  for i in range(steps):
    state, metrics = step(state, batch(i))
    out.append(jax.device_get(metrics))
  return jax.device_get(state), out


def test_eight_devices_match_one_device():
  """Global-batch BatchNorm and the all-gathered loss make sharding invisible to the math."""
  cfg = tiny_config()
  one, m1 = _run(cfg, jax.devices()[:1], 2)
  eight, m8 = _run(cfg, jax.devices(), 2)
  for a, b in zip(m1, m8):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-4)
    np.testing.assert_allclose(a["loss_per_space"], b["loss_per_space"], rtol=2e-4)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_step_updates_params_ema_and_queue():
  cfg = tiny_config(spaces=("rotation",))
  cfg.loss.queue_size = 32
  state0, step, batch = _setup(cfg, jax.devices())
  host0 = jax.device_get(state0)
  state1, metrics = step(state0, batch(0))
  state1 = jax.device_get(state1)
  assert int(state1.step) == 1 and bool(metrics["finite"])
  assert metrics["loss_per_space"].shape == (2,)
  m = cfg.train.ema_momentum
  for p0, p1, e1 in zip(*(jax.tree.leaves(t) for t in
                          (host0.params, state1.params, state1.ema_params))):
    np.testing.assert_allclose(e1, m * p0 + (1 - m) * p1, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in
             zip(jax.tree.leaves(host0.params), jax.tree.leaves(state1.params)))
  # The newest batch's k_0 embeddings are at the front of every space's queue.
  assert state1.queue.shape == (2, 32, 8)
  np.testing.assert_allclose(state1.queue[:, 16:], host0.queue[:, :16])
  np.testing.assert_allclose(np.linalg.norm(state1.queue, axis=-1), 1.0, rtol=1e-5)


def test_moco_baseline_is_n0():
  cfg = tiny_config(spaces=())
  _, metrics = _run(cfg, jax.devices(), 1)
  assert metrics[0]["loss_per_space"].shape == (1,)


def test_nonfinite_step_is_skipped():
  cfg = tiny_config()
  state, step, batch = _setup(cfg, jax.devices())
  poisoned = jax.tree.map(lambda x: x, state)
  bad = poisoned.replace(params=jax.tree.map(lambda p: p * jnp.nan, poisoned.params))
  before = jax.device_get(bad)
  after, metrics = step(bad, batch(0))
  assert not bool(metrics["finite"])
  after = jax.device_get(after)
  assert int(after.step) == 1 and int(after.nonfinite_steps) == 1
  for a, b in zip(jax.tree.leaves(before.opt_state), jax.tree.leaves(after.opt_state)):
    np.testing.assert_array_equal(a, b)


def test_resume_continues_the_same_run(tmp_path):
  """N steps, stop, resume, N more == 2N straight (params, EMA, optimizer state)."""
  straight = tiny_config(steps=4)
  s = train.train_and_evaluate(straight, str(tmp_path / "straight"))
  stopped = train.train_and_evaluate(tiny_config(steps=4), str(tmp_path / "resumed"), stop_at=2)
  assert stopped["step"] == 2
  r = train.train_and_evaluate(tiny_config(steps=4), str(tmp_path / "resumed"))
  assert s["step"] == r["step"] == 4
  a, b = jax.device_get(s["state"]), jax.device_get(r["state"])
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  logged = metrics_log.read_metrics(tmp_path / "resumed")
  assert [m["step"] for m in logged] == [2, 4]
  assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2", "4"]


def test_loss_goes_down():
  cfg = tiny_config(spaces=("rotation",), steps=60, batch=32)
  cfg.data.num_train = 32  # one batch, seen again and again
  cfg.train.base_lr = 0.2
  _, metrics = _run(cfg, jax.devices(), 60)
  first = np.mean([m["loss"] for m in metrics[:3]])
  last = np.mean([m["loss"] for m in metrics[-3:]])
  assert last < first - 0.3, (first, last)


def test_bfloat16_matches_float32_loss():
  """bf16 compute (params, BN statistics, loss and queue in fp32) changes the loss by < 2%."""
  cfg = tiny_config()
  _, m32 = _run(cfg, jax.devices(), 2)
  cfg.model.dtype = "bfloat16"
  state, m16 = _run(cfg, jax.devices(), 2)
  assert all(p.dtype == np.float32 for p in jax.tree.leaves(state.params))
  assert all(s.dtype == np.float32 for s in jax.tree.leaves(state.batch_stats))
  for a, b in zip(m32, m16):
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=2e-2)


def test_online_knn_monitoring_is_logged(tmp_path):
  cfg = tiny_config(steps=2)
  cfg.eval_every_steps = 2
  train.train_and_evaluate(cfg, str(tmp_path))
  logged = metrics_log.read_metrics(tmp_path)
  knn = [m["eval/knn_top1"] for m in logged if "eval/knn_top1" in m]
  assert len(knn) == 1 and 0.0 <= knn[0] <= 1.0


def test_profile_trace_is_written(tmp_path):
  cfg = tiny_config(steps=3)
  cfg.profile_start_step, cfg.profile_num_steps = 1, 1
  train.train_and_evaluate(cfg, str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / "plugins" / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces
