"""The optimizer and lr schedule of a config, with their numbers as arguments of the train step.

This module owns the config's train section (``config.train``: batch, length, optimizer,
schedule, EMA; ``default_config``, ``validate``). Its defaults are docs/method.md's ImageNet-100
recipe (MoCo v2's optimizer): batch 256, 500 epochs, SGD with momentum 0.9, lr 0.03 per 256
images with a cosine schedule, weight decay 1e-4 on every parameter, key encoder EMA 0.999.

``hyperparams(cfg, steps_per_epoch)`` gathers the numbers of the train and loss sections that
the train step uses (peak lr, warm-up and schedule lengths, step-schedule boundaries, momentum,
weight decay, EMA momentum, temperature: ``RUNTIME_FIELDS``) into a pytree of numpy scalars
and vectors. The train step takes that pytree as an argument, so configs that differ only in
these numbers (an lr or weight-decay sweep, a longer budget, another temperature) share one
traced and compiled program, and one persistent compilation cache entry. What shapes the program
stays in the config: the optimizer, the schedule's kind, the weight-decay mask, the EMA ramp,
the batch size; and the step schedule's number of distinct boundaries (a vector `[k]` of
``hp``), which is why a step schedule with more or fewer decay epochs compiles again.

``create(cfg, hp)`` builds the optax optimizer and its schedule from those numbers, concrete or
traced. The schedules compute what optax's do (``optax.cosine_decay_schedule``,
``piecewise_constant_schedule``, a ``linear_schedule`` warm-up joined by ``join_schedules``);
optax's own check their arguments in Python and cannot take traced ones.
``tests/test_optimizer.py`` compares the two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from leave_one_out import fields

OPTIMIZERS = ("sgd", "lars")
SCHEDULES = ("cosine", "step", "constant")
ON_NONFINITE = ("stop", "skip")
WEIGHT_DECAY_MASKS = ("all", "no_bn_bias")


def default_config() -> ml_collections.ConfigDict:
  """The train section's defaults: docs/method.md's ImageNet-100 recipe."""
  t = ml_collections.ConfigDict()
  t.batch_size = 256  # global, over all devices and hosts
  t.num_epochs = 500
  t.num_steps = 0  # > 0 overrides num_epochs
  t.optimizer = "sgd"  # sgd | lars
  t.base_lr = 0.03  # per 256 images: lr = base_lr * batch_size / 256
  t.momentum = 0.9
  t.weight_decay = 1e-4  # L2 penalty added to the gradient (SGD) / LARS weight decay
  t.weight_decay_mask = "all"  # all: decay every parameter (MoCo v2, PyTorch SGD);
  #                              no_bn_bias: skip BatchNorm parameters and biases (every
  #                              parameter with < 2 dims)
  t.schedule = "cosine"  # cosine | step | constant
  t.warmup_epochs = 0.0  # linear warm-up from 0, then the schedule
  t.step_epochs = (300, 400)  # step schedule: multiply by step_decay at these epochs
  t.step_decay = 0.1
  t.ema_momentum = 0.999  # key encoder = EMA of backbone and heads
  t.ema_cosine_ramp = False  # ramp the EMA momentum to 1 with a cosine over training (BYOL)
  t.on_nonfinite = "stop"  # stop | skip: what a non-finite loss or gradient does
  return t


def validate(t: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the train section."""
  check = fields.Section(t, "config.train")
  check.integer("batch_size", 1)
  check.number("num_epochs", 0.0, low_open=True)
  check.integer("num_steps", 0)
  check.one_of("optimizer", OPTIMIZERS)
  check.number("base_lr", 0.0, low_open=True)
  check.number("momentum", 0.0, 1.0, high_open=True)
  check.number("weight_decay", 0.0)
  check.one_of("weight_decay_mask", WEIGHT_DECAY_MASKS)
  check.one_of("schedule", SCHEDULES)
  check.number("warmup_epochs", 0.0)
  check.check(
    list(t.step_epochs) == sorted(t.step_epochs),
    "step_epochs",
    f"must be increasing, got {tuple(t.step_epochs)!r}",
  )
  check.number("step_decay", 0.0, low_open=True)
  check.number("ema_momentum", 0.0, 1.0)
  check.boolean("ema_cosine_ramp")
  check.one_of("on_nonfinite", ON_NONFINITE)


# Config fields that reach the train step through ``hyperparams`` (section -> fields).
RUNTIME_FIELDS = {
  "train": (
    "num_steps",
    "num_epochs",
    "base_lr",
    "momentum",
    "weight_decay",
    "warmup_epochs",
    "step_epochs",
    "step_decay",
    "ema_momentum",
  ),
  "loss": ("temperature",),
}


def total_steps(cfg, steps_per_epoch: int) -> int:
  """The run's length in steps: ``train.num_steps``, else ``num_epochs`` epochs."""
  return cfg.train.num_steps or cfg.train.num_epochs * steps_per_epoch


def hyperparams(cfg, steps_per_epoch: int) -> dict[str, np.ndarray]:
  """The numbers of ``RUNTIME_FIELDS`` as the train step reads them: float32 and int32 scalars,
  and the step schedule's boundaries (int32 `[k]`, in steps after the warm-up; `[0]` for the
  other schedules)."""
  t = cfg.train
  steps = total_steps(cfg, steps_per_epoch)
  warmup = int(round(t.warmup_epochs * steps_per_epoch))
  boundaries = (
    sorted({int(e * steps_per_epoch) - warmup for e in t.step_epochs})
    if (t.schedule == "step")
    else []
  )
  return {
    "lr": np.float32(t.base_lr * t.batch_size / 256),  # peak lr, scaled by batch / 256
    "warmup_steps": np.int32(warmup),
    "total_steps": np.int32(steps),
    "decay_steps": np.int32(max(steps - warmup, 1)),  # the cosine's length after warm-up
    "step_boundaries": np.asarray(boundaries, np.int32),
    "step_decay": np.float32(t.step_decay),
    "momentum": np.float32(t.momentum),
    "weight_decay": np.float32(t.weight_decay),
    "ema_momentum": np.float32(t.ema_momentum),
    "temperature": np.float32(cfg.loss.temperature),
  }


def schedule(cfg, hp) -> optax.Schedule:
  """The lr of optax's count (updates applied so far): a linear warm-up from 0 over
  ``warmup_steps``, then ``train.schedule`` (cosine to 0 over ``decay_steps``, step decays at
  ``step_boundaries``, or constant)."""
  kind = fields.Section(cfg.train, "config.train").one_of("schedule", SCHEDULES)
  lr = hp["lr"]

  def main(count):
    if kind == "cosine":
      decay_steps = jnp.asarray(hp["decay_steps"], jnp.float32)
      count = jnp.minimum(count, decay_steps)
      return lr * (0.5 * (1 + jnp.cos(jnp.pi * count / decay_steps)))
    if kind == "step":
      passed = jnp.expand_dims(count, -1) >= hp["step_boundaries"]  # [..., k]
      return lr * jnp.prod(jnp.where(passed, hp["step_decay"], 1.0), axis=-1)
    return lr * jnp.ones_like(count, jnp.float32)

  def warmed_up(count):
    count = jnp.asarray(count)
    warmup = hp["warmup_steps"]
    linear = lr * (jnp.clip(count, 0, warmup) / jnp.maximum(warmup, 1))
    return jnp.where(count < warmup, linear, main(count - warmup))

  return warmed_up


def create(cfg, hp=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """optax optimizer and its lr schedule from ``hyperparams`` ``hp`` (concrete or traced).

  ``train.weight_decay_mask``: "no_bn_bias" skips BatchNorm parameters and biases (every
  parameter with fewer than 2 dims); "all" decays every parameter, as MoCo v2's PyTorch SGD
  does. LARS never adapts the lr of parameters with fewer than 2 dims (its trust-ratio mask).
  ``hp=None``: placeholder numbers, for the optimizer state's structure only (``tx.init``
  reads no hyperparameter).
  """
  t = cfg.train
  if hp is None:
    hp = {
      "lr": 0.0,
      "warmup_steps": 0,
      "total_steps": 1,
      "decay_steps": 1,
      "step_boundaries": np.zeros((0,), np.int32),
      "step_decay": 1.0,
      "momentum": 0.0,
      "weight_decay": 0.0,
      "ema_momentum": 0.0,
      "temperature": 1.0,
    }
  lr_schedule = schedule(cfg, hp)
  matrices = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  mask = fields.Section(t, "config.train").one_of("weight_decay_mask", WEIGHT_DECAY_MASKS)
  # Always a mask function, so that the optimizer state has the same structure either way.
  decay_mask = (
    matrices if mask == "no_bn_bias" else (lambda params: jax.tree.map(lambda p: True, params))
  )
  if t.optimizer == "lars":
    tx = optax.lars(
      lr_schedule,
      weight_decay=hp["weight_decay"],
      weight_decay_mask=decay_mask,
      trust_ratio_mask=matrices,
      momentum=hp["momentum"],
    )
  else:
    tx = optax.chain(
      optax.add_decayed_weights(hp["weight_decay"], mask=decay_mask),
      optax.sgd(lr_schedule, momentum=hp["momentum"]),
    )
  return tx, lr_schedule


def ema_momentum(cfg, hp, step):
  """The key encoder's EMA momentum after ``step`` updates: ``ema_momentum``, or with
  ``train.ema_cosine_ramp`` ramped to 1 with a cosine over the run's ``total_steps`` (BYOL)."""
  m = jnp.asarray(hp["ema_momentum"], jnp.float32)
  if not cfg.train.ema_cosine_ramp:
    return m
  progress = jnp.minimum(step / jnp.maximum(hp["total_steps"], 1), 1.0)
  return 1.0 - (1.0 - m) * (jnp.cos(jnp.pi * progress) + 1.0) / 2.0
