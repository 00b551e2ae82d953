"""The configuration interface: every knob, its default, and start-up validation.

Config files in ``configs/`` start from ``default_config()`` and override fields; the CLI
accepts ``--config.section.field=value`` on top. The ConfigDict is locked, so a misspelt field is
an error, and ``validate`` checks types and ranges before anything is built, naming the field.
"""

from __future__ import annotations

import ml_collections

from leave_one_out import augment

DATASETS = ("synthetic",)
OPTIMIZERS = ("sgd", "lars")
SCHEDULES = ("cosine", "step", "constant")
ON_NONFINITE = ("stop", "skip")


def default_config() -> ml_collections.ConfigDict:
  """LooC on ImageNet-100 with ResNet-50 (METHOD.md's recipe), in-batch negatives."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # model init, data order and views all derive from it

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"  # the embedded dataset (leave_one_out.synthetic)
  c.data.image_size = 64  # side of the uint8 image the host sends per example
  c.data.num_train = 4096  # synthetic only: training-set size

  c.augment = augment.default_config()  # views: see leave_one_out/augment.py

  c.model = ml_collections.ConfigDict()
  c.model.architecture = "resnet50"  # resnet10 | resnet18 | resnet34 | resnet50 | resnet101
  c.model.width = 64  # channels of the first stage (64 = torchvision)
  c.model.embedding_dim = 128  # output of each head
  c.model.head_hidden = 0  # hidden width of each head; 0 = the backbone feature dim (MoCo v2)
  c.model.looc_plus_plus = False  # each space owns its res5 stage (LooC++)
  c.model.stem = "auto"  # auto | imagenet | small (3x3 stride 1, no max-pool; auto: <= 64 px)
  c.model.dtype = "float32"  # float32 | bfloat16 (computation; params stay float32)
  c.model.bn_momentum = 0.9  # running-average decay of BatchNorm statistics

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.2
  c.loss.z0_positives = "all"  # all (METHOD.md) | k0 (public reproductions)
  c.loss.space_reduction = "mean"  # mean (METHOD.md) | sum
  c.loss.queue_size = 0  # per-space MoCo queue of extra negatives; 0 = in-batch negatives only

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 256  # global, over all devices and hosts
  c.train.num_epochs = 500
  c.train.num_steps = 0  # > 0 overrides num_epochs
  c.train.optimizer = "sgd"  # sgd | lars
  c.train.base_lr = 0.03  # per 256 images: lr = base_lr * batch_size / 256
  c.train.momentum = 0.9
  c.train.weight_decay = 1e-4  # not applied to BatchNorm parameters and biases
  c.train.schedule = "cosine"  # cosine | step | constant
  c.train.warmup_epochs = 0.0
  c.train.step_epochs = (300, 400)  # step schedule: multiply by step_decay at these epochs
  c.train.step_decay = 0.1
  c.train.ema_momentum = 0.999  # key encoder = EMA of backbone and heads
  c.train.ema_cosine_ramp = False  # ramp the EMA momentum to 1 with a cosine over training
  c.train.on_nonfinite = "stop"  # stop | skip: what a non-finite loss or gradient does

  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3  # the last N are kept ...
  c.keep_every_steps = 0  # ... plus every K-th step for good (0 = none)
  c.async_checkpoints = True
  return c


def from_json(data: dict) -> ml_collections.ConfigDict:
  """Rebuilds a config saved as JSON (checkpoint meta): lists become tuples again."""
  def fix(value):
    if isinstance(value, dict):
      return {k: fix(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(fix(v) for v in value)
    return value
  return ml_collections.ConfigDict(fix(data))


def _check(ok, field, message):
  if not ok:
    raise ValueError(f"config.{field} {message}")


def _one_of(cfg, field, allowed):
  value = cfg
  for part in field.split("."):
    value = value[part]
  _check(value in allowed, field, f"must be one of {tuple(allowed)}, got {value!r}")


def _positive(value, field, *, allow_zero=False):
  ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
  _check(ok, field, f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def validate(cfg: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Raises ValueError naming the first invalid field and the values it may take."""
  from leave_one_out import models  # local: models imports nothing from here, keep it that way

  _one_of(cfg, "data.name", DATASETS)
  _positive(cfg.data.image_size, "data.image_size")
  _positive(cfg.data.num_train, "data.num_train")
  augment.validate(cfg.augment)
  _one_of(cfg, "model.architecture", models.ARCHITECTURES)
  _one_of(cfg, "model.stem", models.STEMS)
  _one_of(cfg, "model.dtype", ("float32", "bfloat16"))
  _positive(cfg.model.width, "model.width")
  _positive(cfg.model.embedding_dim, "model.embedding_dim")
  _positive(cfg.model.head_hidden, "model.head_hidden", allow_zero=True)
  _check(0 <= cfg.model.bn_momentum < 1, "model.bn_momentum", "must be in [0, 1)")
  _positive(cfg.loss.temperature, "loss.temperature")
  _one_of(cfg, "loss.z0_positives", ("all", "k0"))
  _one_of(cfg, "loss.space_reduction", ("mean", "sum"))
  _positive(cfg.loss.queue_size, "loss.queue_size", allow_zero=True)
  batch = cfg.train.batch_size
  _positive(batch, "train.batch_size")
  _check(batch % num_devices == 0, "train.batch_size",
         f"({batch}) must be divisible by the number of devices ({num_devices})")
  q = cfg.loss.queue_size
  _check(q == 0 or q % batch == 0, "loss.queue_size",
         f"({q}) must be 0 or a multiple of train.batch_size ({batch}) so whole batches enqueue")
  if cfg.data.name == "synthetic":
    _check(cfg.data.num_train >= batch, "data.num_train",
           f"({cfg.data.num_train}) must hold at least one batch ({batch})")
  _positive(cfg.train.num_epochs, "train.num_epochs")
  _positive(cfg.train.num_steps, "train.num_steps", allow_zero=True)
  _one_of(cfg, "train.optimizer", OPTIMIZERS)
  _positive(cfg.train.base_lr, "train.base_lr")
  _check(0 <= cfg.train.momentum < 1, "train.momentum", "must be in [0, 1)")
  _positive(cfg.train.weight_decay, "train.weight_decay", allow_zero=True)
  _one_of(cfg, "train.schedule", SCHEDULES)
  _positive(cfg.train.warmup_epochs, "train.warmup_epochs", allow_zero=True)
  _check(list(cfg.train.step_epochs) == sorted(cfg.train.step_epochs), "train.step_epochs",
         "must be increasing")
  _check(0 <= cfg.train.ema_momentum <= 1, "train.ema_momentum", "must be in [0, 1]")
  _one_of(cfg, "train.on_nonfinite", ON_NONFINITE)
  _positive(cfg.log_every_steps, "log_every_steps")
  _positive(cfg.checkpoint_every_steps, "checkpoint_every_steps")
  _positive(cfg.keep_checkpoints, "keep_checkpoints")
  _positive(cfg.keep_every_steps, "keep_every_steps", allow_zero=True)
