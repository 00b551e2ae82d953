"""The sharded train step and the training loop."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from leave_one_out import config as config_lib
from leave_one_out import data as data_lib
from leave_one_out import models
from leave_one_out import optimizer
from leave_one_out import sharding
from leave_one_out import train
from leave_one_out.run import logs
from leave_one_out.run import loop
from tests.helpers import set_field
from tests.helpers import tiny_config


def _setup(cfg, devices):
  mesh = sharding.make_mesh(devices)
  source = data_lib.create_train_source(cfg)
  compiled = train.programs(cfg, mesh, source.steps_per_epoch)
  state, step = compiled.new_state(cfg.seed), compiled.step
  batch_sharding = NamedSharding(mesh, P(sharding.DATA_AXIS))
  batch = lambda i: jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(batch_sharding, x), source.batch(i)
  )
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
  for p0, p1, e1 in zip(
    *(jax.tree.leaves(t) for t in (host0.params, state1.params, state1.ema_params))
  ):
    np.testing.assert_allclose(e1, m * p0 + (1 - m) * p1, rtol=1e-5, atol=1e-6)
  assert any(
    not np.allclose(a, b)
    for a, b in zip(jax.tree.leaves(host0.params), jax.tree.leaves(state1.params))
  )
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
  s = loop.pretrain(straight, str(tmp_path / "straight"))
  stopped = loop.pretrain(tiny_config(steps=4), str(tmp_path / "resumed"), stop_at=2)
  assert stopped["step"] == 2
  r = loop.pretrain(tiny_config(steps=4), str(tmp_path / "resumed"))
  assert s["step"] == r["step"] == 4
  a, b = jax.device_get(s["state"]), jax.device_get(r["state"])
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  logged = logs.read_metrics(tmp_path / "resumed")
  assert [m["step"] for m in logged] == [2, 4]
  assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2", "4"]


def test_loss_goes_down():
  cfg = tiny_config(spaces=("rotation",), steps=30, batch=32)
  cfg.data.num_train = 32  # one batch, seen again and again
  cfg.train.base_lr = 0.2  # measured: 4.47 -> 3.97 (mean of the first and last 3 steps)
  _, metrics = _run(cfg, jax.devices(), 30)
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
  loop.pretrain(cfg, str(tmp_path))
  logged = logs.read_metrics(tmp_path)
  knn = [m["eval/knn_top1"] for m in logged if "eval/knn_top1" in m]
  assert len(knn) == 1 and 0.0 <= knn[0] <= 1.0


def test_profile_trace_is_written(tmp_path):
  cfg = tiny_config()  # the suite's most common train step: compiled once for every test
  cfg.profile_start_step, cfg.profile_num_steps = 1, 1
  loop.pretrain(cfg, str(tmp_path))
  traces = [f for _, _, files in os.walk(tmp_path / "plugins" / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces


def test_shuffle_bn_is_the_same_math_on_one_and_eight_devices():
  """Shuffle-BN with explicit groups: the per-group statistics do not depend on the devices;
  and the mode is in effect (global BatchNorm gives another loss)."""
  cfg = tiny_config(spaces=("rotation",), steps=2)
  cfg.loss.queue_size = 32
  cfg.model.bn_groups = 4
  assert models.key_bn_mode(cfg.model, cfg.loss.queue_size, 8) == "shuffle"
  one, m1 = _run(cfg, jax.devices()[:1], 2)
  eight, m8 = _run(cfg, jax.devices(), 2)
  for a, b in zip(m1, m8):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-4)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(eight.params)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
  cfg.model.key_bn = "global"
  _, mg = _run(cfg, jax.devices(), 2)
  assert abs(float(mg[0]["loss"]) - float(m8[0]["loss"])) > 1e-3


def test_batch_norm_groups_of_query_and_keys():
  cfg = tiny_config()
  mesh = sharding.make_mesh()
  rng = jax.random.PRNGKey(0)
  assert train.batch_norm_groups(cfg, mesh, rng, 16, 3) == ({}, {})  # no queue: global
  cfg.loss.queue_size = 32
  query, keys = train.batch_norm_groups(cfg, mesh, rng, 16, 3)
  assert query == {"bn_groups": 8} and keys["bn_groups"] == 8
  ids = np.asarray(keys["bn_group_ids"]).reshape(16, 3)
  assert (ids == ids[:, :1]).all()  # an image's keys share a group
  assert np.bincount(ids[:, 0], minlength=8).tolist() == [2] * 8
  other = train.batch_norm_groups(cfg, mesh, jax.random.PRNGKey(1), 16, 3)[1]["bn_group_ids"]
  assert not np.array_equal(other, keys["bn_group_ids"])  # a fresh permutation per step


def _opt_count(opt_state):
  counts = [
    leaf
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
    if "count" in jax.tree_util.keystr(path)
  ]
  assert counts
  return {int(c) for c in counts}


def test_skipped_step_leaves_schedule_and_ema_ramp_on_the_applied_count():
  """Step 1 has a non-finite gradient and applies no update; step 2's lr and EMA momentum are
  those of update 1, not of step 2, and the logged lr is the lr that was used."""
  cfg = tiny_config(steps=8)
  cfg.train.ema_cosine_ramp = True
  cfg.train.on_nonfinite = "skip"
  state, step, batch = _setup(cfg, jax.devices())
  steps_per_epoch = data_lib.create_train_source(cfg).steps_per_epoch
  hp = optimizer.hyperparams(cfg, steps_per_epoch)
  _, schedule = optimizer.create(cfg, hp)
  metrics = []
  for i in range(3):
    good = jax.tree.map(jnp.copy, state.params)
    if i == 1:  # NaN params make this step's loss and gradient NaN
      state = state.replace(params=jax.tree.map(lambda p: p * jnp.nan, state.params))
    state, m = step(state, batch(i))
    metrics.append(jax.device_get(m))
    if i == 1:  # the skipped step returned the NaN params it was given: put the real ones back
      state = state.replace(params=good)
  assert [bool(m["finite"]) for m in metrics] == [True, False, True]
  state = jax.device_get(state)
  assert int(state.step) == 3 and int(state.nonfinite_steps) == 1
  assert int(train.applied_updates(state)) == 2
  assert _opt_count(state.opt_state) == {2}  # optax's count == applied updates
  assert float(schedule(1)) != float(schedule(2))
  np.testing.assert_allclose(metrics[0]["lr"], schedule(0), rtol=1e-6)
  assert float(metrics[1]["lr"]) == 0.0  # nothing was applied
  np.testing.assert_allclose(metrics[2]["lr"], schedule(1), rtol=1e-6)
  np.testing.assert_allclose(
    metrics[2]["ema_momentum"], optimizer.ema_momentum(cfg, hp, 1), rtol=1e-6
  )


def test_one_compiled_step_runs_each_configs_numbers():
  """Two configs that differ in lr and temperature share one traced train step, and each step
  uses its own config's numbers."""
  mesh = sharding.make_mesh()
  slow, fast = tiny_config(), tiny_config()
  fast.train.base_lr, fast.loss.temperature = 2 * slow.train.base_lr, 0.5
  out = []
  for cfg in (slow, fast):
    p = train.programs(cfg, mesh, 4)
    state = p.init(jax.random.PRNGKey(0))
    batch = jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
        NamedSharding(mesh, P(sharding.DATA_AXIS)), x
      ),
      data_lib.create_train_source(cfg).batch(0),
    )
    out.append(jax.device_get(p.step(state, batch)[1]))
    np.testing.assert_allclose(out[-1]["lr"], p.schedule(0), rtol=1e-6)
  assert p.train_step._cache_size() == 1  # pylint: disable=protected-access
  np.testing.assert_allclose(out[1]["lr"], 2 * out[0]["lr"], rtol=1e-6)
  assert abs(float(out[1]["loss"]) - float(out[0]["loss"])) > 1e-3  # temperature 0.2 vs 0.5


def test_weight_decay_mask():
  """ "all" decays BatchNorm parameters and biases too (MoCo v2); the optimizer state has the
  same structure either way."""
  cfg = tiny_config()
  cfg.train.momentum = 0.0
  model = models.build_model(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 3)), train=False)["params"]
  params = jax.tree.map(lambda p: p + 1.0, params)  # BN biases are 0 at init
  zeros = jax.tree.map(jnp.zeros_like, params)
  structures = []
  for mask in ("no_bn_bias", "all"):
    cfg.train.weight_decay_mask = mask
    for name in ("sgd", "lars"):
      cfg.train.optimizer = name
      tx, _ = optimizer.create(cfg, optimizer.hyperparams(cfg, 10))
      state = tx.init(params)
      structures.append(jax.tree.structure(state))
      if name == "lars":
        continue
      updates, _ = tx.update(zeros, state, params)
      bn = updates["backbone"]["stem_bn"]["bias"]
      conv = updates["backbone"]["stem_conv"]["kernel"]
      assert float(jnp.abs(conv).max()) > 0
      assert (float(jnp.abs(bn).max()) > 0) == (mask == "all"), mask
      head_bias = updates["head0"]["fc1"]["bias"]
      assert (float(jnp.abs(head_bias).max()) > 0) == (mask == "all"), mask
  assert structures[0] == structures[2] and structures[1] == structures[3]


def test_new_fields_are_validated_by_name():

  cases = [
    ("model", "key_bn", "sync", "model.key_bn"),
    ("model", "bn_groups", -1, "model.bn_groups"),
    ("train", "weight_decay_mask", "bn", "train.weight_decay_mask"),
  ]
  for section, field, value, name in cases:
    cfg = tiny_config()
    cfg[section][field] = value
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
      config_lib.validate(cfg, num_devices=8)
  cfg = tiny_config()
  cfg.model.key_bn = "shuffle"  # one device, bn_groups 0: one group, nothing to shuffle
  with pytest.raises(ValueError, match=r"model\.bn_groups.*>= 2"):
    config_lib.validate(cfg, num_devices=1)
  config_lib.validate(cfg, num_devices=8)
  cfg.model.bn_groups = 3  # 16 images do not split into 3 groups
  with pytest.raises(ValueError, match=r"model\.bn_groups.*divide"):
    config_lib.validate(cfg, num_devices=8)


def test_paper_recipe_configs_use_moco_v2_batchnorm_and_weight_decay():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for name in ("looc_in100_r50", "moco_in100_r50"):
    cfg = config_lib.load_file(os.path.join(root, "configs", f"{name}.py"))
    assert cfg.train.weight_decay_mask == "all"
    for devices in (1, 8, 16):
      assert models.key_bn_mode(cfg.model, cfg.loss.queue_size, devices) == "shuffle"
    assert models.bn_groups(cfg.model, 1) == 8  # MoCo v2: 8 GPUs x 32 images


def test_configs_differing_only_in_seed_run_fields_or_hyperparameters_share_their_programs():
  """The claims experiment's seeds, a run's resumption, runs that log, save or profile at
  other steps and sweeps of the optimizer's numbers trace and compile once per process; the
  seed still picks the initial state, the numbers still reach the step, and a field that shapes
  the program gets programs of its own."""
  mesh = sharding.make_mesh()
  seed0, seed1, run_fields, numbers = tiny_config(), tiny_config(), tiny_config(), tiny_config()
  seed1.seed = 1
  run_fields.log_every_steps, run_fields.checkpoint_every_steps = 1, 3
  run_fields.profile_start_step, run_fields.profile_num_steps = 1, 1
  run_fields.data.num_train = 48  # the data reach the step as batches and steps_per_epoch
  for field in optimizer.RUNTIME_FIELDS["train"]:
    if isinstance(numbers.train[field], (int, float)):
      set_field(numbers, f"train.{field}", numbers.train[field] * 2 + 1)
  numbers.train.step_epochs = (1, 2, 3)
  numbers.loss.temperature = 0.5
  shared = train.programs(seed0, mesh, 4)
  same = lambda p: (p.model, p.init, p.train_step) == (shared.model, shared.init, shared.train_step)
  for cfg in (seed1, run_fields, numbers):
    assert same(train.programs(cfg, mesh, 4))
  assert same(train.programs(seed0, mesh, 8))  # steps_per_epoch reaches the schedule only
  assert train.programs(numbers, mesh, 4).num_steps == numbers.train.num_steps != 4
  for field, value in (
    ("augment.crop.scale", (0.5, 1.0)),
    ("model.width", 8),
    ("loss.queue_size", 32),
    ("train.schedule", "constant"),
    ("train.batch_size", 32),
  ):
    other = tiny_config()
    set_field(other, field, value)
    assert same(train.programs(seed0, mesh, 4))  # still cached (the cache holds 4)
    assert not same(train.programs(other, mesh, 4)), field
  assert not same(train.programs(seed0, sharding.make_mesh(jax.devices()[:1]), 4))
  state1 = jax.device_get(shared.init(jax.random.PRNGKey(seed1.seed)))
  model = models.build_model(seed1)
  tx, _ = optimizer.create(seed1)
  # Built afresh, outside programs' cache (the private builder it caches).
  direct = jax.device_get(train._jit_init(seed1, model, tx, mesh)(jax.random.PRNGKey(seed1.seed)))
  for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(direct)):
    np.testing.assert_array_equal(a, b)
  state0 = jax.device_get(shared.init(jax.random.PRNGKey(seed0.seed)))
  assert not np.array_equal(
    state0.params["backbone"]["stem_conv"]["kernel"],
    state1.params["backbone"]["stem_conv"]["kernel"],
  )
