"""The configuration interface: every knob, its default, and start-up validation.

Config files in ``configs/`` start from ``default_config()`` and override fields; the CLI
accepts ``--config.section.field=value`` on top. The ConfigDict is locked, so a misspelt field is
an error, and ``validate`` checks types and ranges before anything is built, naming the field.
"""

from __future__ import annotations

import ml_collections

from leave_one_out import augment

# Built-in dataset names; any other data.name is a tensorflow-datasets builder
# ("caltech_birds2011", "imagenet2012_corrupted/gaussian_noise_3", "oxford_flowers102:2.1.1").
DATASETS = ("synthetic", "imagenet100", "folder")
RESIZE_METHODS = ("bilinear", "bicubic", "area")
ANTIALIAS = ("auto", "always", "never")
OPTIMIZERS = ("sgd", "lars")
SCHEDULES = ("cosine", "step", "constant")
ON_NONFINITE = ("stop", "skip")


def default_config() -> ml_collections.ConfigDict:
  """LooC on ImageNet-100 with ResNet-50 (METHOD.md's recipe), in-batch negatives."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # model init, data order and views all derive from it

  c.data = ml_collections.ConfigDict()
  # synthetic (the embedded dataset, leave_one_out/synthetic.py) | imagenet100 (tfds imagenet2012
  # restricted to the CMC 100 classes) | folder (data_dir/<split>/<class>/*.jpg|jpeg|png) | any
  # tensorflow-datasets image dataset: "name", "name/config" or "name:version".
  c.data.name = "synthetic"
  c.data.data_dir = ""  # tfds: its data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets;
  #                       gs:// works); folder: the root holding <split>/<class>/ images
  c.data.train_split = "train"  # tfds split (slicing works: "train[:90%]") or folder subdirectory
  c.data.eval_split = "validation"  # the split evaluation pipelines read by default
  c.data.classes = ""  # keep only these classes, relabelled 0..K-1 in sorted name order:
  #                      "" = all; "imagenet100" = the CMC list; else a text file, one per line
  c.data.image_size = 64  # S0: side of the uint8 image the host sends per example (the whole
  #                         image is resized to S0 x S0; its original aspect ratio goes along)
  c.data.num_train = 4096  # synthetic only: training-set size
  c.data.synthetic_light = 0.5  # synthetic only: strength of the light from above, in [0, 1)
  #                               (leave_one_out/synthetic.py); 0 = evenly lit scenes, where
  #                               orientation shows only in the object's shape
  c.data.num_examples = 0  # examples per epoch over all hosts; 0 = the split's size (tfds
  #                          metadata, folder listing, known ImageNet-100 sizes, else counted)
  c.data.shuffle_buffer = 10_000  # tfds: encoded records per host in the shuffle buffer (about
  #                                 110 kB each for ImageNet); folders are shuffled exactly
  c.data.skip_corrupt = True  # an unreadable image is skipped, logged and counted (replaced by
  #                             another image of its batch); False: an error naming the file
  c.data.decode_threads = 0  # parallel read/decode/resize calls per host; 0 = tf.data AUTOTUNE
  c.data.host_prefetch = 2  # decoded batches tf.data keeps ready per host
  c.data.resize_method = "bilinear"  # bilinear | bicubic | area: the host's resize filter
  c.data.antialias = "auto"  # auto | always | never. auto: large JPEGs are decoded at 1/2-1/8
  #                            scale in the DCT domain; a side still shrinking > 2x gets a box
  #                            filter (area), else plain resize_method (docs/data.md)
  c.data.image_key = "image"  # tfds feature holding the image
  c.data.label_key = "label"  # tfds feature holding the class label (class filter, evaluation)
  c.data.eval_crop_fraction = 0.875  # evaluation: shorter side -> S / this, centre crop S x S

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

  c.log_every_steps = 50  # console line, TensorBoard and metrics-<step>.jsonl every N steps
  c.checkpoint_every_steps = 1000  # a checkpoint every N steps (plus the last step and any
  #                                  step a preemption notice stops at)
  c.keep_checkpoints = 3  # the newest N checkpoints are kept ...
  c.keep_every_steps = 0  # ... plus every step that is a multiple of K, for good (0 = none;
  #                         a multiple of checkpoint_every_steps), plus the final step
  c.async_checkpoints = True  # write checkpoints in the background while training goes on
  # Online monitoring: every N steps, kNN top-1 (k=20) of the downstream feature on a slice of
  # the embedded dataset (leave_one_out.evaluate.online_knn_accuracy), logged as eval/knn_top1.
  c.eval_every_steps = 0  # 0 = off
  # Profiling: a jax.profiler trace of steps [profile_start_step, + profile_num_steps) goes to
  # workdir/plugins/profile (TensorBoard's profile tab / Perfetto): the per-op time breakdown of
  # views, forward/backward, loss and collectives. 0 steps = off.
  c.profile_start_step = 10
  c.profile_num_steps = 0
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


def synthetic_light(data_cfg) -> float:
  """The embedded dataset's ``max_light`` for a data section. A config saved before the field
  existed (``data.synthetic_light``, added 2026-11-29) trained on evenly lit scenes: 0."""
  return float(data_cfg.get("synthetic_light", 0.0))


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


def _integer(value, field, minimum):
  ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
  _check(ok, field, f"must be an integer >= {minimum}, got {value!r}")


def _nonempty_string(value, field):
  _check(isinstance(value, str) and value.strip() != "", field,
         f"must be a non-empty string, got {value!r}")


def _validate_data(d: ml_collections.ConfigDict) -> None:
  """The data section (names are checked against tfds' registry; data is not touched)."""
  from leave_one_out import input_pipeline  # local: keeps TensorFlow out of plain imports

  _nonempty_string(d.name, "data.name")
  _check(isinstance(d.data_dir, str), "data.data_dir", f"must be a string, got {d.data_dir!r}")
  input_pipeline.check_dataset_name(d.name, d.data_dir)  # ValueError naming config.data.name
  if d.name == "folder":
    _check(d.data_dir.strip() != "", "data.data_dir",
           "must name the image folder root (root/<split>/<class>/*.jpg) when "
           "data.name='folder'")
  _nonempty_string(d.train_split, "data.train_split")
  _nonempty_string(d.eval_split, "data.eval_split")
  _check(isinstance(d.classes, str), "data.classes",
         f"must be '', 'imagenet100' or a class-list file path, got {d.classes!r}")
  _check(d.name != "imagenet100" or d.classes in ("", "imagenet100"), "data.classes",
         f"must be '' for data.name='imagenet100' (its classes are fixed), got {d.classes!r}")
  _check(d.name != "synthetic" or d.classes == "", "data.classes",
         "must be '' for the synthetic dataset")
  _integer(d.image_size, "data.image_size", 1)
  _integer(d.num_train, "data.num_train", 1)
  _integer(d.num_examples, "data.num_examples", 0)
  _integer(d.shuffle_buffer, "data.shuffle_buffer", 1)
  _check(isinstance(d.skip_corrupt, bool), "data.skip_corrupt",
         f"must be True or False, got {d.skip_corrupt!r}")
  _integer(d.decode_threads, "data.decode_threads", 0)
  _integer(d.host_prefetch, "data.host_prefetch", 1)
  _check(d.resize_method in RESIZE_METHODS, "data.resize_method",
         f"must be one of {RESIZE_METHODS}, got {d.resize_method!r}")
  _check(d.antialias in ANTIALIAS, "data.antialias",
         f"must be one of {ANTIALIAS}, got {d.antialias!r}")
  _nonempty_string(d.image_key, "data.image_key")
  _nonempty_string(d.label_key, "data.label_key")
  f = d.eval_crop_fraction
  _check(isinstance(f, (int, float)) and 0 < f <= 1, "data.eval_crop_fraction",
         f"must be in (0, 1], got {f!r}")


def validate(cfg: ml_collections.ConfigDict, *, num_devices: int = 1) -> None:
  """Raises ValueError naming the first invalid field and the values it may take."""
  from leave_one_out import models  # local: models imports nothing from here, keep it that way

  _validate_data(cfg.data)
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
    light = cfg.data.synthetic_light
    _check(isinstance(light, (int, float)) and not isinstance(light, bool) and 0 <= light < 1,
           "data.synthetic_light", f"must be a number in [0, 1), got {light!r}")
    _check(cfg.data.num_train >= batch, "data.num_train",
           f"({cfg.data.num_train}) must hold at least one batch ({batch})")
  _check(cfg.data.num_examples == 0 or cfg.data.num_examples >= batch, "data.num_examples",
         f"({cfg.data.num_examples}) must be 0 or hold at least one batch ({batch})")
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
  _integer(cfg.checkpoint_every_steps, "checkpoint_every_steps", 1)
  _integer(cfg.keep_checkpoints, "keep_checkpoints", 1)
  _integer(cfg.keep_every_steps, "keep_every_steps", 0)
  every = cfg.checkpoint_every_steps
  _check(cfg.keep_every_steps % every == 0, "keep_every_steps",
         f"({cfg.keep_every_steps}) must be 0 or a multiple of config.checkpoint_every_steps "
         f"({every}): only saved steps can be kept, so nothing would be kept "
         f"(e.g. {max(1, round(cfg.keep_every_steps / every)) * every})")
  _positive(cfg.eval_every_steps, "eval_every_steps", allow_zero=True)
  _positive(cfg.profile_start_step, "profile_start_step", allow_zero=True)
  _positive(cfg.profile_num_steps, "profile_num_steps", allow_zero=True)
