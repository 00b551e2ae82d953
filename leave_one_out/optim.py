"""The train section of the config (``config.train``): batch, length, optimizer, schedule, EMA.

Defaults are docs/method.md's ImageNet-100 recipe (MoCo v2's optimizer): batch 256, 500 epochs, SGD
with momentum 0.9, lr 0.03 per 256 images with a cosine schedule, weight decay 1e-4 on every
parameter, key encoder EMA 0.999. The optimizer itself is built by
``leave_one_out.optimizer.create`` (its numbers are arguments of the train step).
"""

from __future__ import annotations

import ml_collections

OPTIMIZERS = ("sgd", "lars")
SCHEDULES = ("cosine", "step", "constant")
ON_NONFINITE = ("stop", "skip")
WEIGHT_DECAY_MASKS = ("all", "no_bn_bias")


def default_config() -> ml_collections.ConfigDict:
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


def _check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ValueError(f"config.train.{field} {message}")


def _number(t, field: str, *, low: float = 0.0, strict: bool = False,
            high: float | None = None, integer: bool = False) -> None:
  value = t[field]
  kinds = (int,) if integer else (int, float)
  ok = isinstance(value, kinds) and not isinstance(value, bool) and (
      value > low if strict else value >= low) and (high is None or value <= high)
  bound = f"{'>' if strict else '>='} {low}" + ("" if high is None else f" and <= {high}")
  _check(ok, field, f"must be {'an integer' if integer else 'a number'} {bound}, got {value!r}")


def validate(t: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the train section."""
  _number(t, "batch_size", low=0, strict=True, integer=True)
  _number(t, "num_epochs", low=0, strict=True)
  _number(t, "num_steps", integer=True)
  _check(t.optimizer in OPTIMIZERS, "optimizer",
         f"must be one of {OPTIMIZERS}, got {t.optimizer!r}")
  _number(t, "base_lr", strict=True)
  _check(isinstance(t.momentum, (int, float)) and 0 <= t.momentum < 1, "momentum",
         f"must be in [0, 1), got {t.momentum!r}")
  _number(t, "weight_decay")
  _check(t.weight_decay_mask in WEIGHT_DECAY_MASKS, "weight_decay_mask",
         f"must be one of {WEIGHT_DECAY_MASKS}, got {t.weight_decay_mask!r}")
  _check(t.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}, got {t.schedule!r}")
  _number(t, "warmup_epochs")
  _check(list(t.step_epochs) == sorted(t.step_epochs), "step_epochs", "must be increasing")
  _number(t, "step_decay", strict=True)
  _number(t, "ema_momentum", high=1.0)
  _check(isinstance(t.ema_cosine_ramp, bool), "ema_cosine_ramp",
         f"must be True or False, got {t.ema_cosine_ramp!r}")
  _check(t.on_nonfinite in ON_NONFINITE, "on_nonfinite",
         f"must be one of {ON_NONFINITE}, got {t.on_nonfinite!r}")
