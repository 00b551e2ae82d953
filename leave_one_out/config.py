"""The configuration: the sections assembled, the run-level fields, validation, config files.

Each section owns its defaults (a comment per field) and its validation, in the module of the
concept it configures:

  config.data      leave_one_out.data   the dataset and the host input pipeline
  config.augment   leave_one_out.augment       views and augmentations
  config.model     leave_one_out.models        backbone and heads
  config.loss      leave_one_out.losses        the LooC loss
  config.train     leave_one_out.optimizer     batch, length, optimizer, schedule, EMA
  config.objectives leave_one_out.objectives  auxiliary objectives (AugSelf, E-SSL, CASSLE),
                                               off by default
  config.online    here (``online_config``)    monitoring every eval_every_steps
                                               (leave_one_out.run.monitor)

``default_config()`` is LooC on ImageNet-100 with a ResNet-50, docs/method.md's recipe
(docs/method.md); configs in ``configs/`` start from it (or from another config file, through
``load_file``) and override what differs; the CLI accepts ``--config.section.field=value`` on
top. The ConfigDict is locked, so a misspelt field is an error, and ``validate`` checks every
field before anything is built, naming the field.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from leave_one_out import augment
from leave_one_out import data
from leave_one_out import fields
from leave_one_out import losses
from leave_one_out import models
from leave_one_out import objectives
from leave_one_out import optimizer


def default_config() -> ml_collections.ConfigDict:
  """LooC on ImageNet-100 with ResNet-50 (docs/method.md's recipe): spaces colour and rotation,
  224-px views, a 16,384-key queue per space, SGD with a cosine schedule for 500 epochs."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # model init, data order and views all derive from it
  c.data = data.default_config()
  c.augment = augment.default_config()
  c.model = models.default_config()
  c.loss = losses.default_config()
  c.train = optimizer.default_config()
  c.objectives = objectives.default_config()  # auxiliary objectives, every one off
  c.init_from = init_from_config()

  c.log_every_steps = 100  # console line, TensorBoard and metrics-<step>.jsonl every N steps
  c.checkpoint_every_steps = 1000  # a checkpoint every N steps (about 2 epochs; plus the last
  #                                  step and any step a preemption notice stops at)
  c.keep_checkpoints = 3  # the newest N checkpoints are kept ...
  c.keep_every_steps = 50_000  # ... plus every step that is a multiple of K, for good (0 = none;
  #                              a multiple of checkpoint_every_steps: 50k, 100k, ..., about
  #                              every 100 epochs of ImageNet-100), plus the final step
  c.async_checkpoints = True  # write checkpoints in the background while training goes on
  # Online monitoring: every N steps, kNN top-1 (k=20) of the downstream feature on the run's
  # own data (config.online; leave_one_out.run.monitor), logged as eval/knn_top1.
  c.eval_every_steps = 0  # 0 = off
  c.online = online_config()
  # Profiling: a jax.profiler trace of steps [profile_start_step, + profile_num_steps) goes to
  # workdir/plugins/profile (TensorBoard's profile tab / Perfetto): the per-op time breakdown of
  # views, forward/backward, loss and collectives. 0 steps = off.
  c.profile_start_step = 10
  c.profile_num_steps = 0
  return c


INIT_PARTS = ("backbone", "backbone_and_heads")


def init_from_config() -> ml_collections.ConfigDict:
  """``config.init_from``: pretrained weights a new run starts from (leave_one_out.run.warm_start)."""
  i = ml_collections.ConfigDict()
  i.path = ""  # a workdir, checkpoint, exported .msgpack or --import_torch directory; "" = none
  i.parts = "backbone"  # backbone: the ResNet (LooC++: and its res5 stages), heads drawn afresh;
  #                       backbone_and_heads: the heads too (the same spaces and sizes)
  return i


def online_config() -> ml_collections.ConfigDict:
  """``config.online``: what ``leave_one_out.run.monitor`` measures every eval_every_steps."""
  o = ml_collections.ConfigDict()
  o.train_split = ""  # the kNN bank (and probe training set): a split of config.data;
  #                     "" = data.train_split
  o.eval_split = ""  # the queries; "" = data.eval_split. The same split as train_split: the
  #                    num_test images after the bank in the split's fixed order (held out)
  o.num_train = 1000  # bank images
  o.num_test = 500  # query images
  o.linear_probe = False  # also a fast linear probe (eval/linear_top1), seconds more per call
  return o


def find_file(path: str, *, relative_to: str | None = None) -> str:
  """Where the config file ``path`` is: an absolute path as it is; a relative one next to
  ``relative_to`` (a config file building on a sibling passes its ``__file__``), then in the
  working directory, then in the repository this package was installed from (an editable
  install run from elsewhere). FileNotFoundError names every place tried."""
  candidates = (
    [path]
    if os.path.isabs(path)
    else [
      *([os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)] if relative_to else []),
      os.path.abspath(path),
      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path),
    ]
  )
  found = next((os.path.normpath(p) for p in candidates if os.path.isfile(p)), None)
  if found is None:
    raise FileNotFoundError(f"config file {path!r} not found; tried {candidates}")
  return found


def load_module(path: str, *, relative_to: str | None = None):
  """A config file as a module (``load_file`` runs its ``get_config``), found by
  ``find_file``."""
  found = find_file(path, relative_to=relative_to)
  name = "config_file_" + os.path.splitext(os.path.basename(found))[0]
  spec = importlib.util.spec_from_file_location(name, found)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_file(path: str, arg: str | None = None, *, relative_to: str | None = None):
  """``get_config(arg)`` of a config file, as ``--config=path[:arg]`` gives it.

  ``path`` may end in ``:arg`` (``"configs/claims.py:ci"``); an explicit ``arg`` wins. Every
  config file that builds on another, the experiment harness and the tests load configs through
  this function (see ``find_file`` for where a relative path is looked up).
  """
  if arg is None and ":" in os.path.basename(path):
    path, arg = path.rsplit(":", 1)
  module = load_module(path, relative_to=relative_to)
  return module.get_config(arg) if arg is not None else module.get_config()


def from_json(data: dict) -> ml_collections.ConfigDict:
  """Rebuilds a config saved as JSON (checkpoint meta): lists become tuples again."""

  def fix(value):
    if isinstance(value, dict):
      return {k: fix(v) for k, v in value.items()}
    if isinstance(value, list):
      return tuple(fix(v) for v in value)
    return value

  return ml_collections.ConfigDict(fix(data))


def validate(cfg: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Raises ValueError naming the first invalid field and the values it may take."""
  check = fields.Section(cfg, "config")
  check.integer("seed", 0)
  data.validate(cfg.data)
  augment.validate(cfg.augment)
  models.validate(cfg.model)
  losses.validate(cfg.loss)
  optimizer.validate(cfg.train)
  objectives.validate(cfg.objectives, cfg)
  for field in ("online.train_split", "online.eval_split"):
    check.string(field, empty=True)
  check.integer("online.num_train", 2)
  check.integer("online.num_test", 1)
  check.boolean("online.linear_probe")
  check.string("init_from.path", empty=True)
  check.one_of("init_from.parts", INIT_PARTS)
  # Fields that depend on more than one section.
  batch = cfg.train.batch_size
  check.check(
    batch % num_devices == 0,
    "train.batch_size",
    f"({batch}) must be divisible by the number of devices ({num_devices})",
  )
  q = cfg.loss.queue_size
  check.check(
    q % batch == 0,
    "loss.queue_size",
    f"({q}) must be 0 or a multiple of train.batch_size ({batch}) so whole batches enqueue",
  )
  groups = models.bn_groups(cfg.model, num_devices)
  if cfg.model.key_bn == "shuffle":
    check.check(
      groups > 1,
      "model.bn_groups",
      f"must be >= 2 with model.key_bn='shuffle' (got {cfg.model.bn_groups}, "
      f"{num_devices} device(s)): one BatchNorm group cannot be shuffled; set "
      "model.bn_groups (MoCo v2: 8 groups of 32) or model.key_bn='global'",
    )
  if models.key_bn_mode(cfg.model, q, num_devices) == "shuffle":
    check.check(
      batch % groups == 0,
      "model.bn_groups",
      f"({groups}) must divide train.batch_size ({batch}) into equal BatchNorm groups",
    )
  if cfg.data.num_examples:
    data.check_one_batch(cfg.data.num_examples, batch, "config.data.num_examples")
  # Run-level fields.
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    check.integer(field, 1)
  for field in ("keep_every_steps", "eval_every_steps", "profile_start_step", "profile_num_steps"):
    check.integer(field, 0)
  every = cfg.checkpoint_every_steps
  check.check(
    cfg.keep_every_steps % every == 0,
    "keep_every_steps",
    f"({cfg.keep_every_steps}) must be 0 or a multiple of config.checkpoint_every_steps "
    f"({every}): only saved steps can be kept, so nothing would be kept "
    f"(e.g. {max(1, round(cfg.keep_every_steps / every)) * every})",
  )
  check.boolean("async_checkpoints")
