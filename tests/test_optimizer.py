"""The optimizer and lr schedule built from runtime numbers (leave_one_out/optimizer.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from leave_one_out import optimizer
from tests.helpers import tiny_config

STEPS_PER_EPOCH = 10


def _config(schedule, warmup_epochs, optimizer_name="sgd"):
  cfg = tiny_config(steps=60)
  cfg.train.schedule = schedule
  cfg.train.warmup_epochs = warmup_epochs
  cfg.train.step_epochs = (2, 4.5, 4.5)  # a repeated epoch decays once, as in optax's dict
  cfg.train.step_decay = 0.1
  cfg.train.optimizer = optimizer_name
  cfg.train.base_lr = 0.4
  cfg.train.weight_decay = 1e-3
  return cfg


def _optax_reference(cfg):
  """The optimizer as optax's own schedules build it from Python numbers."""
  t = cfg.train
  lr = t.base_lr * t.batch_size / 256
  steps = optimizer.total_steps(cfg, STEPS_PER_EPOCH)
  warmup = int(round(t.warmup_epochs * STEPS_PER_EPOCH))
  if t.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(steps - warmup, 1))
  elif t.schedule == "step":
    main = optax.piecewise_constant_schedule(
      lr, {int(e * STEPS_PER_EPOCH) - warmup: t.step_decay for e in t.step_epochs}
    )
  else:
    main = optax.constant_schedule(lr)
  schedule = (
    main
    if warmup == 0
    else optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  )
  matrices = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  if t.optimizer == "lars":
    tx = optax.lars(
      schedule,
      weight_decay=t.weight_decay,
      weight_decay_mask=matrices,
      trust_ratio_mask=matrices,
      momentum=t.momentum,
    )
  else:
    tx = optax.chain(
      optax.add_decayed_weights(t.weight_decay, mask=matrices),
      optax.sgd(schedule, momentum=t.momentum),
    )
  return tx, schedule


@pytest.mark.parametrize(
  "schedule,warmup_epochs",
  [("cosine", 0.0), ("cosine", 1.5), ("step", 0.0), ("step", 1.0), ("constant", 2.0)],
)
def test_schedules_match_optax_at_every_step(schedule, warmup_epochs):
  cfg = _config(schedule, warmup_epochs)
  hp = optimizer.hyperparams(cfg, STEPS_PER_EPOCH)
  counts = jnp.arange(70)  # past the end of the run too
  ours = jax.jit(jax.vmap(lambda c, h: optimizer.schedule(cfg, h)(c), in_axes=(0, None)))(
    counts, hp
  )
  _, reference = _optax_reference(cfg)
  expected = jax.jit(jax.vmap(reference))(counts)
  np.testing.assert_allclose(ours, expected, rtol=2e-6, atol=1e-9)
  whole = jax.jit(lambda c, h: optimizer.schedule(cfg, h)(c))(counts, hp)  # element-wise too
  np.testing.assert_allclose(whole, ours, rtol=1e-7)
  assert float(ours.max()) == pytest.approx(0.4 * 16 / 256)


@pytest.mark.parametrize("name", ["sgd", "lars"])
def test_updates_match_optax_with_traced_numbers(name):
  """Three updates with the numbers as jit arguments equal optax's with Python numbers."""
  cfg = _config("cosine", 1.0, name)
  params = {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "bias": jnp.ones((4,))}
  grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), params) for i in range(3)]

  def run(tx, params):
    state = tx.init(params)
    for g in grads:
      updates, state = tx.update(g, state, params)
      params = optax.apply_updates(params, updates)
    return params

  ours = jax.jit(lambda p, h: run(optimizer.create(cfg, h)[0], p))(
    params, optimizer.hyperparams(cfg, STEPS_PER_EPOCH)
  )
  expected = jax.jit(lambda p: run(_optax_reference(cfg)[0], p))(params)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  placeholder, _ = optimizer.create(cfg)  # structure only: what the initial state is built with
  assert jax.tree.structure(placeholder.init(params)) == jax.tree.structure(
    _optax_reference(cfg)[0].init(params)
  )


def test_hyperparams_are_the_configs_numbers():
  cfg = _config("step", 1.0)
  hp = optimizer.hyperparams(cfg, STEPS_PER_EPOCH)
  assert hp["lr"] == np.float32(0.4 * 16 / 256) and hp["lr"].dtype == np.float32
  assert (int(hp["warmup_steps"]), int(hp["total_steps"]), int(hp["decay_steps"])) == (10, 60, 50)
  assert hp["step_boundaries"].tolist() == [10, 35]  # epochs 2 and 4.5, after the warm-up
  assert hp["temperature"] == np.float32(cfg.loss.temperature)
  assert optimizer.hyperparams(_config("cosine", 0.0), 10)["step_boundaries"].shape == (0,)
  cfg.train.num_steps = 0
  cfg.train.num_epochs = 3
  assert int(optimizer.hyperparams(cfg, STEPS_PER_EPOCH)["total_steps"]) == 30
