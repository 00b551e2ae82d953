r"""Evaluation of a pretrained LooC encoder: every protocol, one command, one table.

  python -m leave_one_out.evaluate --workdir=/tmp/looc_demo [--config=configs/eval/synthetic.py]
      [--config.corruption.num_images=500 ...]

Loads the newest checkpoint of ``--workdir`` (``pretrained.load_pretrained``), extracts frozen
features of every feature kind once per image set, then runs (METHOD.md, "Evaluation
protocols"; each task can be switched off in the config):

* probe: a linear probe per label (on the embedded dataset: shape, colour, texture), optax
  softmax regression with the L2 strength chosen on a held-out part of the training split;
  top-1/top-5 on the test split.
* rotation: 4-way linear probe of the rotation (0/90/180/270 degrees) applied to an image;
  train and test sets hold every image at all four rotations.
* knn: weighted kNN (k=20, temperature 0.07, cosine) with the training split as the bank.
* fewshot: K-shot (5 and 10) linear classification, 10 trials, Adam lr 0.03, 250 iterations;
  mean and 95% confidence interval over trials.
* corruption: the primary label's linear probe (trained on clean features) applied to
  corrupted test images: on-device synthetic corruptions (``leave_one_out.corruptions``: noise,
  blur, weather, digital, 5 severities each) for any dataset, or ImageNet-C through tfds
  (``corruption.source = "imagenet2012_corrupted"``, only where it is already prepared).
* sensitivity: for every feature kind and every augmentation, the mean cosine distance between
  the embedding of a view and of the same view with only that augmentation's parameters
  redrawn, divided by the mean distance between two different images' views. LooC should give
  ~0 for Z_0 everywhere and a large value for Z_i at augmentation i. Written as a matrix and a
  heatmap PNG.

Datasets (``DATASET_SOURCES``): "synthetic", the embedded dataset (labels shape, colour, texture;
configs/eval/synthetic.py), and "data", a tfds dataset or an image folder read through
``leave_one_out.data.load_eval_arrays`` from the data section ``dataset.data`` (one label, "label";
train = ``data.train_split``, test = ``data.eval_split``; shorter side resized and centre-cropped
to the model's input size on the host): configs/eval/tfds.py:<tfds name> and
configs/eval/folder.py:<root>.

Results go to ``<workdir>/evaluation.json`` (and ``sensitivity.png``); the table printed at
the end has one row per feature kind (backbone, looc++, space:i, embedding:i) and one column per
task. ``run`` and ``format_table`` are the library entry points; ``online_knn_accuracy`` is a
cheap kNN monitor for use during pretraining.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from leave_one_out import augment
from leave_one_out import data as data_lib
from leave_one_out import corruptions
from leave_one_out import pretrained
from leave_one_out import probes
from leave_one_out import render
from leave_one_out import synthetic
from leave_one_out.data import common as data_common
from leave_one_out.data import config as data_config
from leave_one_out.data import synthetic as synthetic_source

CORRUPTION_SOURCES = ("synthetic", "imagenet2012_corrupted")
SMALL_CLASS_POLICIES = ("error", "skip")
DATA_SPLITS = {"train": "train_split", "test": "eval_split"}  # evaluation split -> data field
RESULTS_FILE = "evaluation.json"
HEATMAP_FILE = "sensitivity.png"


# ------------------------------------------------------------------------------------ config


def default_config() -> ml_collections.ConfigDict:
  """Every knob of the evaluation, with values sized for the embedded dataset on a CPU.

  configs/eval/synthetic.py documents each field; this is the same configuration.
  configs/eval/tfds.py and folder.py are the same layout for a tfds dataset or an image folder
  (``dataset.name = "data"``, the data section in ``dataset.data``).
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.step = -1
  c.encoder = "online"
  c.kinds = ()
  c.batch_size = 256
  c.results_file = RESULTS_FILE
  c.heatmap_file = HEATMAP_FILE

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "synthetic"
  c.dataset.num_train = 2000
  c.dataset.num_test = 1000
  c.dataset.image_size = 0
  c.dataset.seed = -1
  c.dataset.labels = ("shape", "color", "texture")
  c.dataset.primary_label = "shape"
  c.dataset.imagenet_classes = ()
  c.dataset.data = data_config.default_config()  # dataset.name="data" only

  c.probe = ml_collections.ConfigDict()
  c.probe.enabled = True
  c.probe.steps = 300
  c.probe.lr = 0.05
  c.probe.l2_grid = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
  c.probe.val_fraction = 0.2
  c.probe.normalize = "standardize"

  c.rotation = ml_collections.ConfigDict()
  c.rotation.enabled = True
  c.rotation.num_train = 500
  c.rotation.num_test = 250

  c.knn = ml_collections.ConfigDict()
  c.knn.enabled = True
  c.knn.k = 20
  c.knn.temperature = 0.07

  c.fewshot = ml_collections.ConfigDict()
  c.fewshot.enabled = True
  c.fewshot.shots = (5, 10)
  c.fewshot.trials = 10
  c.fewshot.steps = 250
  c.fewshot.lr = 0.03
  c.fewshot.l2 = 0.0
  c.fewshot.normalize = "l2"
  c.fewshot.small_classes = "error"

  c.corruption = ml_collections.ConfigDict()
  c.corruption.enabled = True
  c.corruption.source = "synthetic"
  c.corruption.names = corruptions.CORRUPTIONS
  c.corruption.severities = corruptions.SEVERITIES
  c.corruption.num_images = 200
  c.corruption.tfds_data_dir = ""

  c.sensitivity = ml_collections.ConfigDict()
  c.sensitivity.enabled = True
  c.sensitivity.num_images = 256
  c.sensitivity.augmentations = ()

  c.online = ml_collections.ConfigDict()
  c.online.num_train = 1000
  c.online.num_test = 500
  return c


def _fail(field: str, message: str):
  raise ValueError(f"eval_config.{field} {message}")


def _int_at_least(value, field, low):
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    _fail(field, f"must be an int >= {low}, got {value!r}")


def validate_config(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field (``eval_config.<field> ...``)."""
  if c.encoder not in pretrained.ENCODERS:
    _fail("encoder", f"must be one of {pretrained.ENCODERS}, got {c.encoder!r}")
  _int_at_least(c.step, "step", -1)
  _int_at_least(c.batch_size, "batch_size", 1)
  if c.dataset.name not in DATASET_SOURCES:
    _fail("dataset.name", f"{c.dataset.name!r} is not available: the sources are "
          f"{tuple(DATASET_SOURCES)}; a tfds dataset or an image folder is dataset.name='data' "
          "with its data section in dataset.data (configs/eval/tfds.py:<tfds name>, "
          "configs/eval/folder.py:<root>)")
  if c.dataset.name == "data":
    _validate_data_source(c)
  else:
    _int_at_least(c.dataset.num_train, "dataset.num_train", 2)
    _int_at_least(c.dataset.num_test, "dataset.num_test", 1)
  _int_at_least(c.dataset.image_size, "dataset.image_size", 0)
  _int_at_least(c.dataset.seed, "dataset.seed", -1)
  if not c.dataset.labels:
    _fail("dataset.labels", "must name at least one label")
  if c.dataset.primary_label not in c.dataset.labels:
    _fail("dataset.primary_label", f"must be one of dataset.labels {tuple(c.dataset.labels)}, "
          f"got {c.dataset.primary_label!r}")
  _int_at_least(c.probe.steps, "probe.steps", 1)
  if not c.probe.l2_grid or min(c.probe.l2_grid) < 0:
    _fail("probe.l2_grid", f"must be a non-empty tuple of values >= 0, got {c.probe.l2_grid!r}")
  if not 0 <= c.probe.val_fraction < 1:
    _fail("probe.val_fraction", f"must be in [0, 1), got {c.probe.val_fraction!r}")
  for field in ("probe.normalize", "fewshot.normalize"):
    section, name = field.split(".")
    if c[section][name] not in probes.NORMALIZATIONS:
      _fail(field, f"must be one of {probes.NORMALIZATIONS}, got {c[section][name]!r}")
  _int_at_least(c.rotation.num_train, "rotation.num_train", 1)
  _int_at_least(c.rotation.num_test, "rotation.num_test", 1)
  _int_at_least(c.knn.k, "knn.k", 1)
  if not c.knn.temperature > 0:
    _fail("knn.temperature", f"must be > 0, got {c.knn.temperature!r}")
  if not c.fewshot.shots or any(not isinstance(k, int) or k < 1 for k in c.fewshot.shots):
    _fail("fewshot.shots", f"must be a tuple of ints >= 1, got {c.fewshot.shots!r}")
  _int_at_least(c.fewshot.trials, "fewshot.trials", 1)
  if c.fewshot.get("small_classes", "error") not in SMALL_CLASS_POLICIES:
    _fail("fewshot.small_classes", f"must be one of {SMALL_CLASS_POLICIES}, got "
          f"{c.fewshot.small_classes!r}")
  _int_at_least(c.fewshot.steps, "fewshot.steps", 1)
  if c.corruption.source not in CORRUPTION_SOURCES:
    _fail("corruption.source", f"must be one of {CORRUPTION_SOURCES}, got "
          f"{c.corruption.source!r}")
  for name in c.corruption.names:
    if name not in corruptions.CORRUPTIONS:
      _fail("corruption.names", f"has unknown corruption {name!r}; available: "
            f"{corruptions.CORRUPTIONS}")
  if not c.corruption.names or not c.corruption.severities or any(
      s not in corruptions.SEVERITIES for s in c.corruption.severities):
    _fail("corruption", f"names must be non-empty and severities a non-empty subset of "
          f"{corruptions.SEVERITIES}, got {tuple(c.corruption.severities)!r}")
  _int_at_least(c.corruption.num_images, "corruption.num_images", 1)
  _int_at_least(c.sensitivity.num_images, "sensitivity.num_images", 2)
  for name in c.sensitivity.augmentations:
    if name not in augment.AUGMENTATIONS:
      _fail("sensitivity.augmentations", f"has unknown augmentation {name!r}; available: "
            f"{augment.AUGMENTATIONS}")
  _int_at_least(c.online.num_train, "online.num_train", 1)
  _int_at_least(c.online.num_test, "online.num_test", 1)


def _data_field_names(message: str) -> str:
  """Rewrites the pipeline's ``config.data.<field>`` into ``eval_config.dataset.data.<field>``."""
  return re.sub(r"(?<![\w.])config\.data\.", "eval_config.dataset.data.", message)


def _validate_data_source(c: ml_collections.ConfigDict) -> None:
  """dataset.name="data": sizes, the single label, and the data section (no data is read)."""
  for field in ("num_train", "num_test"):
    n = c.dataset[field]
    _int_at_least(n, f"dataset.{field}", 0)
    if 0 < n < 2:
      _fail(f"dataset.{field}", f"must be 0 (the whole split) or >= 2, got {n!r}")
  if tuple(c.dataset.labels) != ("label",):
    _fail("dataset.labels", "must be ('label',) for dataset.name='data' (a tfds or image-folder "
          f"dataset has one class label), got {tuple(c.dataset.labels)!r}")
  d = c.dataset.get("data")
  if not isinstance(d, ml_collections.ConfigDict):
    _fail("dataset.data", "must be a data section (the layout of data.config.default_config(), "
          "e.g. configs/data/<name>.py's get_config()) when dataset.name='data', got "
          f"{type(d).__name__}")
  missing = sorted(set(data_config.default_config()) - set(d))
  if missing:
    _fail("dataset.data", f"lacks the fields {missing} of data.config.default_config()")
  if d.name == "synthetic":
    _fail("dataset.data.name", "must name a tfds dataset, 'imagenet100' or 'folder'; the "
          "embedded dataset is dataset.name='synthetic'")
  try:
    data_config.validate(d)
  except ValueError as e:
    raise ValueError(_data_field_names(str(e))) from e
  if d.train_split.strip() == d.eval_split.strip():
    _fail("dataset.data.eval_split", f"must differ from dataset.data.train_split (both "
          f"{d.eval_split!r}): probes would be tested on their own training images. Slice one "
          "split instead, e.g. train_split='train[:80%]', eval_split='train[80%:]'")


# ------------------------------------------------------------------------------------ data


def load_synthetic(split: str, num_examples: int, eval_cfg, pretrain_cfg) -> dict:
  """The embedded dataset (``leave_one_out.synthetic``) as an evaluation source.

  Returns ``{"image": uint8 [N, S0, S0, 3], "labels": {name: int32 [N]},
  "num_classes": {name: int}}`` with labels shape, color and texture. The image side S0 is
  ``dataset.image_size`` or, when 0, the pretraining ``data.image_size``; the seed is
  ``dataset.seed`` or, when -1, the pretraining seed (train and test never share images); the
  light from above is the pretraining ``data.synthetic_light``.
  """
  size = eval_cfg.dataset.image_size or pretrain_cfg.data.image_size
  seed = pretrain_cfg.seed if eval_cfg.dataset.seed < 0 else eval_cfg.dataset.seed
  data = synthetic.load(split, num_examples=num_examples, image_size=size, seed=seed,
                        max_light=synthetic_source.light(pretrain_cfg.data))
  return {"image": data["image"],
          "labels": {name: data[name] for name in synthetic.FACTORS},
          "num_classes": {name: len(v) for name, v in synthetic.FACTORS.items()}}


def load_data(split: str, num_examples: int, eval_cfg, pretrain_cfg) -> dict:
  """A tfds dataset or an image folder (``eval_cfg.dataset.data``) as an evaluation source.

  ``dataset.data`` is a data section (``data.config.default_config()`` layout, e.g.
  ``configs/data/caltech_birds2011.py``); the evaluation's "train" split is its
  ``train_split``, "test" its ``eval_split``. The whole split (``num_examples`` = 0) or its first
  ``num_examples`` (tfds: the stored order; folder: a fixed pseudo-random order from
  ``dataset.seed``) is read through ``data.load_eval_arrays``: shorter side resized to
  ``S / data.eval_crop_fraction``, centre S x S crop, on the host, with S = ``dataset.image_size``
  or, when 0, the model's input size (pretraining ``augment.image_size``). One label, "label"
  (after ``data.classes``: 0..K-1 in sorted class-name order; a folder's evaluation split uses
  the training split's classes). Every host reads the whole split, as for the synthetic source.

  Returns ``{"image": uint8 [N, S, S, 3], "labels": {"label": int32 [N]}, "num_classes":
  {"label": K}, "class_names": {"label": names or None}, "source": description}``.
  """
  d = eval_cfg.dataset.data
  size = eval_cfg.dataset.image_size or pretrain_cfg.augment.image_size
  seed = pretrain_cfg.seed if eval_cfg.dataset.seed < 0 else eval_cfg.dataset.seed
  try:
    data = data_lib.load_eval_arrays(d, d[DATA_SPLITS[split]], image_size=size,
                                     batch_size=eval_cfg.batch_size,
                                     num_examples=num_examples, seed=seed)
  except data_common.DataError as e:
    raise data_common.DataError(_data_field_names(str(e))) from e
  names = data["class_names"]
  return {"image": data["image"], "labels": {"label": data["label"]},
          "num_classes": {"label": int(data["num_classes"])},
          "class_names": {"label": None if names is None else tuple(names)},
          "source": data_lib.describe(d)}


def check_data_source(eval_cfg) -> None:
  """Fails fast (before the model loads) where ``dataset.data`` cannot be read.

  Metadata only: a tfds dataset must be prepared (the error prints the ``tfds build`` command;
  nothing is downloaded), an image folder must have both split directories.
  """
  d = eval_cfg.dataset.data
  try:
    data_lib.check_ready(d)
  except data_common.DataError as e:
    raise data_common.DataError(_data_field_names(str(e))) from e


# name -> f(split, num_examples, eval_cfg, pretrain_cfg) -> {"image": uint8 [N, S0, S0, 3],
# "labels": {name: int32 [N]}, "num_classes": {name: int}} (optional: "class_names": {name:
# names}, "source": a description). "data" reads eval_cfg.dataset.data (tfds or image folder).
DATASET_SOURCES: dict[str, Callable[..., dict]] = {"synthetic": load_synthetic,
                                                   "data": load_data}


def load_dataset(eval_cfg, pretrain_cfg, split: str, num_examples: int) -> dict:
  """``num_examples`` of ``split`` from the source ``eval_cfg.dataset.name``; checks labels."""
  name = eval_cfg.dataset.name
  if name not in DATASET_SOURCES:
    raise ValueError(f"eval_config.dataset.name {name!r} is not available: the implemented "
                     f"sources are {tuple(DATASET_SOURCES)}")
  data = DATASET_SOURCES[name](split, num_examples, eval_cfg, pretrain_cfg)
  missing = [l for l in eval_cfg.dataset.labels if l not in data["labels"]]
  if missing:
    raise ValueError(f"eval_config.dataset.labels has {missing}, which dataset {name!r} does "
                     f"not provide; it has {sorted(data['labels'])}")
  return data


def check_imagenet_c_prepared(names, severities, data_dir: str = "") -> None:
  """ValueError unless every tfds ``imagenet2012_corrupted/<name>_<severity>`` is prepared.

  Never downloads: it only looks for prepared data in ``data_dir`` (tfds' default when empty).
  """
  import tensorflow_datasets as tfds  # local: only this source needs it
  missing, where = [], None
  for name in names:
    for severity in severities:
      builder = tfds.builder(f"imagenet2012_corrupted/{name}_{severity}",
                             data_dir=data_dir or None)
      where = where or os.path.dirname(os.path.dirname(builder.data_dir))
      if not builder.is_prepared():
        missing.append(f"{name}_{severity}")
  if missing:
    raise ValueError(
        f"ImageNet-C (tfds imagenet2012_corrupted) is not prepared under {where}: missing "
        f"{len(missing)} configs, e.g. {', '.join(missing[:4])}. Prepare it once with tfds "
        "(`tfds build imagenet2012_corrupted --config=<name>_<severity> --data_dir=...`, "
        "which needs the ImageNet validation archive) and point "
        "eval_config.corruption.tfds_data_dir at it; evaluation never downloads. Or use "
        "eval_config.corruption.source='synthetic'.")


def load_imagenet_c(name: str, severity: int, num_examples: int, data_dir: str = "") -> dict:
  """``num_examples`` prepared ImageNet-C validation images: {"image" uint8, "label" int32}."""
  import tensorflow_datasets as tfds
  builder = tfds.builder(f"imagenet2012_corrupted/{name}_{severity}", data_dir=data_dir or None)
  ds = builder.as_dataset(split=f"validation[:{num_examples}]", shuffle_files=False)
  images, labels = [], []
  for ex in tfds.as_numpy(ds):
    images.append(ex["image"])
    labels.append(ex["label"])
  return {"image": np.stack(images), "label": np.asarray(labels, np.int32)}


def imagenet_classes(eval_cfg, train) -> tuple[int, ...]:
  """ImageNet-1k index of each class of the primary label, for ImageNet-C.

  ``dataset.imagenet_classes`` if set. Otherwise, for a source with class names that are all
  WordNet ids (ImageNet-100, an ImageNet folder, imagenet2012 itself), their indices in tfds
  imagenet2012's label list (read from the tfds package, offline); for the embedded dataset,
  () (its labels are taken as the indices). Any other dataset needs ``dataset.imagenet_classes``.
  """
  if eval_cfg.dataset.imagenet_classes:
    return tuple(int(i) for i in eval_cfg.dataset.imagenet_classes)
  names = (train.get("class_names") or {}).get(eval_cfg.dataset.primary_label)
  if eval_cfg.dataset.name == "synthetic":
    return ()
  if names and all(re.fullmatch(r"n\d{8}", str(n)) for n in names):
    import tensorflow_datasets as tfds
    wnids = tfds.builder("imagenet2012", data_dir="/nonexistent").info.features["label"].names
    index = {w: i for i, w in enumerate(wnids)}
    unknown = [n for n in names if n not in index]
    if not unknown:
      return tuple(index[n] for n in names)
  raise ValueError(
      "eval_config.dataset.imagenet_classes must give the ImageNet-1k index of each of the "
      f"dataset's classes for corruption.source='imagenet2012_corrupted': the class names of "
      f"{train.get('source', eval_cfg.dataset.name)} are not all ImageNet WordNet ids "
      f"(e.g. {list(names or [])[:3]}). Or use corruption.source='synthetic'.")


# ------------------------------------------------------------------------------------ kinds


def space_names(cfg) -> list[str]:
  """"invariant", then the augmentations with a space of their own (as ``train.space_names``)."""
  return ["invariant"] + list(cfg.augment.spaces)


def kind_label(kind: str, spaces: list[str]) -> str:
  """"embedding:1" -> "embedding:1 (color)"."""
  name, _, index = kind.partition(":")
  return f"{kind} ({spaces[int(index)]})" if index.isdigit() and int(index) < len(spaces) \
      else kind


# ------------------------------------------------------------------------------------ sensitivity


def _redrawn_group(name: str, base: dict, rng, batch: int, forced_cfg) -> dict:
  """A new parameter group for ``name`` that differs from ``base[name]`` for every image."""
  if name == "rotation":
    offset = jax.random.randint(rng, (batch,), 1, 4)
    return {"k": (base["rotation"]["k"] + offset) % 4}
  if name == "flip":
    return {"apply": ~base["flip"]["apply"]}
  return augment.sample_params(rng, batch, forced_cfg)[name]


def augmentation_sensitivity(model, variables, images, aug_cfg, *, kinds, augmentations=(),
                             seed: int = 0, batch_size: int = 256, mesh=None) -> dict:
  """How far each feature moves when only one augmentation's parameters change.

  For B source images, a base view is drawn with ``aug_cfg`` (``augment.sample_params``). For
  every augmentation a, a second view copies every parameter group of the base view except a's,
  which is redrawn so that it differs for every image (rotation: another quarter turn; flip:
  the opposite; the others: fresh parameters with the augmentation applied for sure). With
  d(u, v) = 1 - cos(u, v):

    distance[kind, a] = mean_b d(z(base_b), z(view_a,b))
    between[kind]     = mean_b d(z(base_b), z(base_{b+1}))   (two different images)
    matrix[kind, a]   = distance / between

  so 0 means invariant to a, and 1 means a moves the feature as far as changing the image.

  Args:
    model, variables: as for ``pretrained.extract_feature_dict``.
    images: uint8 `[B, H0, W0, 3]` source images (B >= 2).
    aug_cfg: the pretraining augment config (``cfg.augment``).
    kinds: feature kinds (rows).
    augmentations: columns; () = every augmentation enabled in ``aug_cfg``. A disabled one is
      enabled with its default settings for this measurement.
    seed: parameter draws.

  Returns:
    dict with rows (kinds), columns (augmentations), matrix, distance (lists of lists),
    between (list).
  """
  images = np.asarray(images)
  b = images.shape[0]
  if b < 2:
    raise ValueError(f"augmentation_sensitivity needs at least 2 images, got {b}")
  augs = tuple(augmentations) or tuple(a for a in augment.AUGMENTATIONS if aug_cfg[a].enabled)
  render_cfg = copy.deepcopy(aug_cfg)
  with render_cfg.unlocked():
    for a in augs:
      render_cfg[a].enabled = True
  forced_cfg = copy.deepcopy(render_cfg)
  with forced_cfg.unlocked():
    for a in ("flip", "blur", "color", "texture"):
      forced_cfg[a].prob = 1.0

  key = jax.random.key(seed)
  k_base, *k_alt = jax.random.split(key, len(augs) + 1)
  base = augment.sample_params(k_base, b, aug_cfg)
  views = [base] + [{**base, a: _redrawn_group(a, base, k, b, forced_cfg)}
                    for a, k in zip(augs, k_alt)]
  params = jax.tree.map(lambda *xs: jnp.stack(xs), *views)  # leaves [1 + A, B, ...]
  rendered = jax.jit(lambda x, p: render.render(x, p, render_cfg))(images, params)
  rendered = np.asarray(rendered).reshape((-1,) + rendered.shape[2:])
  feats = pretrained.extract_feature_dict(model, variables, rendered, kinds,
                                          batch_size=batch_size, mesh=mesh)

  def cos_distance(u, v):
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return 1.0 - np.sum(u * v, axis=-1)

  distance, between = [], []
  for kind in kinds:
    z = feats[kind].reshape((1 + len(augs), b, -1)).astype(np.float64)
    distance.append([float(cos_distance(z[0], z[1 + i]).mean()) for i in range(len(augs))])
    between.append(float(cos_distance(z[0], np.roll(z[0], 1, axis=0)).mean()))
  matrix = [[d / max(btw, 1e-12) for d in row] for row, btw in zip(distance, between)]
  return {"rows": list(kinds), "columns": list(augs), "matrix": matrix, "distance": distance,
          "between": between}


def plot_sensitivity(sensitivity: dict, path: str, row_labels=None) -> None:
  """Writes the sensitivity matrix as an annotated heatmap PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  m = np.asarray(sensitivity["matrix"])
  rows = row_labels or sensitivity["rows"]
  cols = sensitivity["columns"]
  fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.45 * len(rows) + 1.4))
  im = ax.imshow(m, cmap="viridis", vmin=0.0, vmax=max(1.0, float(np.nanmax(m))))
  ax.set_xticks(range(len(cols)), cols)
  ax.set_yticks(range(len(rows)), rows)
  for i in range(m.shape[0]):
    for j in range(m.shape[1]):
      ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
              color="white" if m[i, j] < 0.6 * max(1.0, float(np.nanmax(m))) else "black")
  ax.set_title("augmentation sensitivity\n(cosine distance / distance between images)",
               fontsize=9)
  fig.colorbar(im, ax=ax, fraction=0.04)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=120)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())  # local or gs://


# ------------------------------------------------------------------------------------ protocols


def _rotations(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """float `[N, S, S, 3]` -> every image at k = 0..3 quarter turns: `[4N, S, S, 3]`, k `[4N]`."""
  rotated = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
  return np.concatenate(rotated), np.repeat(np.arange(4, dtype=np.int32), len(images))


def _linear_probe(c, train_x, train_y, test_x, test_y, num_classes: int) -> dict:
  return probes.linear_probe(
      train_x, train_y, test_x, test_y, num_classes, l2_grid=tuple(c.probe.l2_grid),
      val_fraction=c.probe.val_fraction, steps=c.probe.steps, lr=c.probe.lr,
      normalize_mode=c.probe.normalize, seed=c.seed)


def _without_classifier(r: dict) -> dict:
  return {k: v for k, v in r.items() if k != "classifier"}


def probe_task(c, kinds, f_train, f_test, train, test) -> tuple[dict, dict]:
  """Linear probe per label (only the primary one when just corruption needs it).

  Returns ({kind: {label: result}}, {kind: the primary label's classifier}).
  """
  primary = c.dataset.primary_label
  labels = tuple(c.dataset.labels) if c.probe.enabled else (primary,)
  out, classifiers = {}, {}
  for kind in kinds:
    out[kind] = {}
    for label in labels:
      r = _linear_probe(c, f_train[kind], train["labels"][label], f_test[kind],
                        test["labels"][label], train["num_classes"][label])
      out[kind][label] = _without_classifier(r)
      if label == primary:
        classifiers[kind] = r["classifier"]
  return out, classifiers


def rotation_task(c, kinds, featurize, train_x, test_x) -> dict:
  """4-way rotation probe: {kind: result}. Train/test images at all four rotations."""
  rot_train_x, rot_train_y = _rotations(train_x[:c.rotation.num_train])
  rot_test_x, rot_test_y = _rotations(test_x[:c.rotation.num_test])
  f_train, f_test = featurize(rot_train_x), featurize(rot_test_x)
  return {kind: _without_classifier(_linear_probe(c, f_train[kind], rot_train_y, f_test[kind],
                                                  rot_test_y, 4))
          for kind in kinds}


def knn_task(c, kinds, f_train, f_test, train, test) -> dict:
  """kNN per label: {kind: {label: {"top1", "top5"}}}."""
  return {kind: {label: probes.knn_probe(
      f_train[kind], train["labels"][label], f_test[kind], test["labels"][label],
      train["num_classes"][label], k=c.knn.k, temperature=c.knn.temperature)
                 for label in c.dataset.labels}
          for kind in kinds}


def fewshot_classes(c, train) -> dict[int, np.ndarray]:
  """Per K of ``fewshot.shots``: the primary label's classes with >= K training examples.

  Returns {K: bool [C]}. A class with fewer examples cannot give K shots: with
  ``fewshot.small_classes="error"`` (default) that is a ValueError naming the classes (raised
  before any feature is extracted); with "skip" the K-shot task leaves those classes, and their
  test images, out.
  """
  label = c.dataset.primary_label
  num_classes = train["num_classes"][label]
  counts = np.bincount(train["labels"][label], minlength=num_classes)
  names = (train.get("class_names") or {}).get(label)
  out = {}
  for k in c.fewshot.shots:
    short = np.flatnonzero(counts < k)
    if short.size and c.fewshot.get("small_classes", "error") == "error":
      shown = ", ".join(f"{names[i] if names else i}: {counts[i]}" for i in short[:8])
      raise ValueError(
          f"eval_config.fewshot.shots: {k}-shot needs {k} training examples of every class, but "
          f"{short.size} of the {num_classes} classes of {label!r} have fewer in the training "
          f"split (class: count: {shown}{', ...' if short.size > 8 else ''}). Set "
          f"eval_config.fewshot.small_classes='skip' to leave those classes (and their test "
          "images) out of the K-shot task, lower fewshot.shots, or read more of the training "
          "split (dataset.num_train; 0 = all of it).")
    out[k] = counts >= k
  return out


def fewshot_task(c, kinds, f_train, f_test, train, test) -> dict:
  """K-shot on the primary label: {kind: {str(K): {"mean", "ci95", "accuracies", ...}}}.

  Where some classes have fewer than K training examples (``fewshot.small_classes="skip"``),
  the K-shot classifier covers only the others (relabelled) and is tested on their test images;
  the result adds num_classes, skipped_classes and num_test. With fewer than 2 such classes, or
  no test image of them, the K-shot result is empty (mean None).
  """
  label = c.dataset.primary_label
  y_train, y_test = train["labels"][label], test["labels"][label]
  num_classes = train["num_classes"][label]
  kept = fewshot_classes(c, train)
  out = {kind: {} for kind in kinds}
  for k in c.fewshot.shots:
    fit = lambda tr_x, tr_y, te_x, te_y, n: probes.few_shot(
        tr_x, tr_y, te_x, te_y, n, shots=k, trials=c.fewshot.trials, steps=c.fewshot.steps,
        lr=c.fewshot.lr, l2=c.fewshot.l2, normalize_mode=c.fewshot.normalize, seed=c.seed)
    keep = kept[k]
    if keep.all():
      for kind in kinds:
        out[kind][str(k)] = fit(f_train[kind], y_train, f_test[kind], y_test, num_classes)
      continue
    relabel = np.full((num_classes,), -1, np.int32)
    relabel[keep] = np.arange(int(keep.sum()), dtype=np.int32)
    m_train, m_test = keep[y_train], keep[y_test]
    info = {"num_classes": int(keep.sum()), "skipped_classes": int((~keep).sum()),
            "num_test": int(m_test.sum())}
    logging.warning("%d-shot: %d of %d classes have fewer than %d training examples and are "
                    "left out (eval_config.fewshot.small_classes='skip'); %d test images remain",
                    k, info["skipped_classes"], num_classes, k, info["num_test"])
    for kind in kinds:
      if info["num_classes"] < 2 or info["num_test"] == 0:
        out[kind][str(k)] = {"mean": None, "ci95": None, "accuracies": [], "shots": int(k),
                             "trials": int(c.fewshot.trials), **info}
      else:
        out[kind][str(k)] = {**fit(f_train[kind][m_train], relabel[y_train[m_train]],
                                   f_test[kind][m_test], relabel[y_test[m_test]],
                                   info["num_classes"]), **info}
  return out


def corruption_task(c, kinds, featurize, classifiers, test_x, f_test, test, image_size,
                    imagenet_classes=None) -> dict:
  """Accuracy of the primary label's probe on corrupted test images: {kind: summary}.

  ``imagenet_classes``: ImageNet-C only, the ImageNet-1k index of each class of the primary
  label (None = ``dataset.imagenet_classes``).
  """
  n = min(c.corruption.num_images, len(test_x))
  if c.corruption.source == "synthetic":
    corrupted = {}
    clean_x = _as_float(test_x[:n])
    for i, name in enumerate(c.corruption.names):
      for severity in c.corruption.severities:
        key = jax.random.key(c.seed * 1000 + i * 10 + severity, impl="rbg")  # fast on CPU
        images = np.asarray(corruptions.corrupt_jit(clean_x, name, severity, key))
        corrupted[(name, severity)] = featurize(images)
    y = test["labels"][c.dataset.primary_label][:n]
    clean = {kind: f_test[kind][:n] for kind in kinds}
  else:
    classes = tuple(c.dataset.imagenet_classes) if imagenet_classes is None else imagenet_classes
    corrupted, y = _imagenet_c_features(featurize, c, image_size, n, classes)
    clean = None
  out = {}
  for kind in kinds:
    accuracy = lambda f: probes.topk_accuracy(probes.classify(classifiers[kind], f), y)
    acc = {key: accuracy(f[kind]) for key, f in corrupted.items()}
    out[kind] = _summarise_corruption(acc, None if clean is None else accuracy(clean[kind]))
    out[kind]["source"] = c.corruption.source
  return out


def _summarise_corruption(acc: dict, clean: float | None) -> dict:
  """acc {(name, severity): accuracy} -> mean, per family, per corruption (list by severity)."""
  by_corruption: dict[str, list[float]] = {}
  for (name, _), a in sorted(acc.items()):
    by_corruption.setdefault(name, []).append(a)
  by_family = {}
  for family, names in corruptions.FAMILIES.items():
    vals = [a for (n, _), a in acc.items() if n in names]
    if vals:
      by_family[family] = float(np.mean(vals))
  mean = float(np.mean(list(acc.values())))
  return {"mean": mean, "clean": clean, "relative": mean / clean if clean else None,
          "by_family": by_family, "by_corruption": by_corruption}


def _jsonable(x):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, (np.floating, float)):
    return None if not math.isfinite(float(x)) else float(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  return x


def _model_input(images: np.ndarray, size: int) -> np.ndarray:
  """Images at the model's input size: uint8 kept as it is when already S x S (the forward
  pass scales it to [0, 1] on device, exactly as ``pretrained.preprocess``; a quarter of the
  host memory of float32), else ``pretrained.preprocess`` (resize + centre crop, float32)."""
  images = np.asarray(images)
  if images.dtype == np.uint8 and images.shape[1:3] == (size, size):
    return images
  return pretrained.preprocess(images, size)


def _as_float(images: np.ndarray) -> np.ndarray:
  """float32 [0, 1] images from ``_model_input``'s output."""
  images = np.asarray(images)
  return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images


@contextlib.contextmanager
def _timed(seconds: dict, name: str):
  """Records the wall-clock seconds of the ``with`` block in ``seconds[name]``."""
  t0 = time.perf_counter()
  yield
  seconds[name] = round(time.perf_counter() - t0, 2)


def run(workdir: str, eval_cfg: ml_collections.ConfigDict | None = None, *,
        mesh=None) -> dict:
  """Evaluates the pretrained encoder in ``workdir`` with every enabled protocol.

  Args:
    workdir: a training workdir (or anything ``pretrained.load_pretrained`` accepts).
    eval_cfg: ``default_config()`` layout; None = the defaults (the embedded dataset).
    mesh: a 1-D "data" mesh for feature extraction; None = every device.

  Returns:
    The results dict (also written to ``<workdir>/<eval_cfg.results_file>`` when workdir is a
    directory): "rows" maps each feature kind to its results per task ("probe", "rotation",
    "knn", "fewshot", "corruption"), "sensitivity" holds the matrix, plus "chance" levels,
    sizes, the checkpoint's step and timings. ``format_table`` turns it into the table.
  """
  c = default_config() if eval_cfg is None else eval_cfg
  validate_config(c)
  seconds, t_start = {}, time.perf_counter()
  timer = lambda name: _timed(seconds, name)
  if c.corruption.enabled and c.corruption.source == "imagenet2012_corrupted":
    check_imagenet_c_prepared(c.corruption.names, c.corruption.severities,
                              c.corruption.tfds_data_dir)  # fail before any work
    if c.dataset.name == "synthetic":
      raise ValueError("eval_config.corruption.source='imagenet2012_corrupted' needs an "
                       "evaluation dataset with ImageNet labels; dataset.name='synthetic' has "
                       "none. Use corruption.source='synthetic' for it.")
  if c.dataset.name == "data":
    check_data_source(c)  # metadata only: fail before the model loads

  with timer("load"):
    step = None if c.step < 0 else c.step
    model, variables, cfg = pretrained.load_pretrained(workdir, step=step, encoder=c.encoder,
                                                       mesh=mesh)
    kinds = tuple(c.kinds) or tuple(pretrained.feature_kinds(model))
    for kind in kinds:
      pretrained.parse_kind(kind, model)
    size = cfg.augment.image_size

  with timer("data"):
    train = load_dataset(c, cfg, "train", c.dataset.num_train)
    test = load_dataset(c, cfg, "test", c.dataset.num_test)
    if c.fewshot.enabled:
      fewshot_classes(c, train)  # classes too small for K shots: fail before the features
    in_classes = None
    if c.corruption.enabled and c.corruption.source == "imagenet2012_corrupted":
      in_classes = imagenet_classes(c, train)
    train_x = _model_input(train["image"], size)  # [N, S, S, 3]
    test_x = _model_input(test["image"], size)

  featurize = lambda images: pretrained.extract_feature_dict(
      model, variables, images, kinds, batch_size=c.batch_size, mesh=mesh)
  with timer("features"):
    f_train, f_test = featurize(train_x), featurize(test_x)

  rows = {kind: {"dim": int(f_train[kind].shape[1])} for kind in kinds}
  task_results = {}
  classifiers = {}
  args = (c, kinds, f_train, f_test, train, test)
  if c.probe.enabled or c.corruption.enabled:
    with timer("probe"):
      task_results["probe"], classifiers = probe_task(*args)
  if c.rotation.enabled:
    with timer("rotation"):
      task_results["rotation"] = rotation_task(c, kinds, featurize, train_x, test_x)
  if c.knn.enabled:
    with timer("knn"):
      task_results["knn"] = knn_task(*args)
  if c.fewshot.enabled:
    with timer("fewshot"):
      task_results["fewshot"] = fewshot_task(*args)
  if c.corruption.enabled:
    with timer("corruption"):
      task_results["corruption"] = corruption_task(c, kinds, featurize, classifiers, test_x,
                                                   f_test, test, size, in_classes)
  for task, per_kind in task_results.items():
    for kind in kinds:
      rows[kind][task] = per_kind[kind]

  sensitivity = None
  if c.sensitivity.enabled:
    with timer("sensitivity"):
      sensitivity = augmentation_sensitivity(
          model, variables, test["image"][:c.sensitivity.num_images], cfg.augment,
          kinds=kinds, augmentations=tuple(c.sensitivity.augmentations), seed=c.seed,
          batch_size=c.batch_size, mesh=mesh)

  spaces = space_names(cfg)
  labels = tuple(c.dataset.labels)
  results = _jsonable({
      "workdir": str(pretrained._path(workdir)),
      "step": pretrained.checkpoint_step(workdir, step),
      "model": {"architecture": cfg.model.architecture, "width": cfg.model.width,
                "looc_plus_plus": bool(cfg.model.looc_plus_plus), "image_size": size,
                "spaces": spaces},
      "dataset": {"name": c.dataset.name, "source": train.get("source", c.dataset.name),
                  "num_train": len(train_x), "num_test": len(test_x),
                  "labels": list(labels), "primary_label": c.dataset.primary_label,
                  "num_classes": {l: train["num_classes"][l] for l in labels},
                  "image_size": int(train["image"].shape[1])},
      "chance": {**{l: 1.0 / train["num_classes"][l] for l in labels}, "rotation": 0.25},
      "kinds": list(kinds),
      "kind_labels": {k: kind_label(k, spaces) for k in kinds},
      "rows": rows,
      "sensitivity": sensitivity,
      "eval_config": json.loads(c.to_json()),
      "timing_s": {**seconds, "total": round(time.perf_counter() - t_start, 2)},
  })
  out_dir = epath.Path(workdir)
  if out_dir.is_dir() and jax.process_index() == 0:
    (out_dir / c.results_file).write_text(json.dumps(results, indent=1))
    if sensitivity is not None:
      plot_sensitivity(sensitivity, str(out_dir / c.heatmap_file),
                       [results["kind_labels"][k] for k in kinds])
  return results


def _imagenet_c_features(featurize, c, image_size: int, n: int, classes=()):
  """Features of prepared ImageNet-C images and their labels mapped to the dataset's.

  ``classes``: the ImageNet-1k index of each dataset label; () = the labels are those indices.
  """
  classes = tuple(classes)
  to_label = {cls: i for i, cls in enumerate(classes)}
  corrupted, labels = {}, None
  for name in c.corruption.names:
    for severity in c.corruption.severities:
      data = load_imagenet_c(name, severity, n, c.corruption.tfds_data_dir)
      keep = np.array([not classes or l in to_label for l in data["label"]])
      y = np.array([to_label.get(l, l) if classes else l for l in data["label"][keep]])
      x = pretrained.preprocess(data["image"][keep], image_size)
      corrupted[(name, severity)] = featurize(x)
      labels = y if labels is None else labels
  return corrupted, labels


# ------------------------------------------------------------------------------------ table


def _pct(x) -> str:
  return "-" if x is None else f"{100 * x:.1f}"


def _fewshot_cell(r: dict) -> str:
  if r.get("mean") is None:
    return "-"
  return f"{100 * r['mean']:.1f}±{100 * (r['ci95'] or 0):.1f}"


def format_table(results: dict) -> str:
  """The evaluation table: rows = feature kinds, columns = tasks (accuracies in %).

  Columns: a linear probe per label (top-1; a single-label dataset, e.g. a tfds or image-folder
  one, gets top-1 and top-5 of its class label), rotation (top-1), kNN on the primary label
  (top-1), K-shot on the primary label (mean +- 95% CI), corruption (mean top-1 of the primary
  label's probe over every corruption and severity). A second table gives the augmentation
  sensitivity matrix.
  """
  rows, kinds = results["rows"], results["kinds"]
  labels_ = results.get("kind_labels", {})
  primary = results["dataset"]["primary_label"]
  single = len(results["dataset"]["labels"]) == 1
  first = rows[kinds[0]] if kinds else {}
  columns: list[tuple[str, Callable[[dict], str]]] = [("dim", lambda r: str(r["dim"]))]
  for label in results["dataset"]["labels"]:
    if label in first.get("probe", {}):
      for top in (("top1", "top5") if single else ("top1",)):
        name = f"{top[:3]}-{top[3]}" if single else label
        columns.append((name, lambda r, l=label, t=top: _pct(
            r.get("probe", {}).get(l, {}).get(t))))
  if "rotation" in first:
    columns.append(("rotation", lambda r: _pct(r["rotation"]["top1"])))
  if "knn" in first:
    columns.append(("kNN" if single else f"kNN {primary}",
                    lambda r: _pct(r["knn"][primary]["top1"])))
  for k in first.get("fewshot", {}):
    columns.append((f"{k}-shot", lambda r, k=k: _fewshot_cell(r["fewshot"][k])))
  if "corruption" in first:
    columns.append(("corrupt", lambda r: _pct(r["corruption"]["mean"])))

  header = ["features"] + [name for name, _ in columns]
  body = [[labels_.get(k, k)] + [fn(rows[k]) for _, fn in columns] for k in kinds]
  m = results["model"]
  d = results["dataset"]
  source = d.get("source") or d["name"]
  if single:
    classes = d.get("num_classes", {}).get(primary)
    described = (f"{source}: {d['num_train']} train / {d['num_test']} test images"
                 f"{f', {classes} classes' if classes else ''}, {m['image_size']} px centre "
                 f"crops; accuracy %: linear probe top-1 / top-5, kNN, few-shot and corrupt on "
                 f"{primary!r}")
  else:
    described = (f"{source}: {d['num_train']} train / {d['num_test']} test images; top-1 %; "
                 f"probe/kNN/few-shot on {primary!r} except the per-label columns")
  lines = [f"LooC evaluation: {results['workdir']} (step {results.get('step')}, "
           f"{m['architecture']} width {m['width']}, {m['image_size']} px"
           f"{', LooC++' if m['looc_plus_plus'] else ''})",
           described,
           _markdown(header, body)]
  chance = results.get("chance", {})
  lines.append("chance: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in chance.items()))
  for k, r in first.get("fewshot", {}).items():
    if r.get("skipped_classes"):
      lines.append(f"{k}-shot: {r['skipped_classes']} classes with fewer than {k} training "
                   f"examples left out; {r['num_classes']} classes, {r['num_test']} test images"
                   + ("" if r.get("mean") is not None else " (too few to classify)"))
  if "corruption" in first:
    clean = ", ".join(f"{labels_.get(k, k)} {_pct(rows[k]['corruption'].get('clean'))}"
                      for k in kinds)
    lines.append(f"corrupt: mean over {len(first['corruption']['by_corruption'])} corruptions "
                 f"x severities ({first['corruption']['source']}); clean accuracy on the same "
                 f"images: {clean}")
  s = results.get("sensitivity")
  if s:
    lines.append("")
    lines.append("augmentation sensitivity (mean cosine distance when only that augmentation "
                 "changes / distance between images; 0 = invariant):")
    body = [[labels_.get(k, k)] + [f"{v + 0.0:.2f}".replace("-0.00", "0.00") for v in row]
            for k, row in zip(s["rows"], s["matrix"])]
    lines.append(_markdown(["features"] + s["columns"], body))
  if results.get("timing_s"):
    lines.append("time (s): " + ", ".join(f"{k} {v}" for k, v in results["timing_s"].items()))
  return "\n".join(lines)


def _markdown(header: list[str], body: list[list[str]]) -> str:
  widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
  fmt = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |"
  return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [fmt(r) for r in body])


# ------------------------------------------------------------------------------------ online


def online_knn_accuracy(model, variables, cfg, eval_cfg=None, *, mesh=None) -> float:
  """kNN top-1 (primary label) of the downstream feature, for monitoring during pretraining.

  Args:
    model: the model being trained (``train.build_model(cfg)``).
    variables: ``{"params": state.params, "batch_stats": state.batch_stats}`` (the online
      encoder).
    cfg: the pretraining config.
    eval_cfg: sizes and kNN settings (``online.num_train``, ``online.num_test``, ``knn.*``,
      ``dataset.*``); None = ``default_config()``.

  Returns:
    Accuracy in [0, 1] of the "looc++" feature for LooC++, else "backbone" (V).
  """
  c = default_config() if eval_cfg is None else eval_cfg
  kind = "looc++" if model.looc_plus_plus else "backbone"
  label = c.dataset.primary_label
  train = load_dataset(c, cfg, "train", c.online.num_train)
  test = load_dataset(c, cfg, "test", c.online.num_test)
  feats = [pretrained.extract_features(model, variables, d["image"], kind,
                                       image_size=cfg.augment.image_size,
                                       batch_size=c.batch_size, mesh=mesh)
           for d in (train, test)]
  return probes.knn_probe(feats[0], train["labels"][label], feats[1], test["labels"][label],
                          train["num_classes"][label], k=c.knn.k,
                          temperature=c.knn.temperature)["top1"]


# ------------------------------------------------------------------------------------ CLI


def main(argv):
  from absl import flags
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  results = run(f.workdir, f.config)
  if jax.process_index() == 0:
    print(format_table(results), flush=True)
    if epath.Path(f.workdir).is_dir():
      print(f"results: {epath.Path(f.workdir) / results['eval_config']['results_file']}")


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  flags.DEFINE_string("workdir", None, "Training workdir (or checkpoint directory).")
  config_flags.DEFINE_config_file("config", None, "Eval config file (configs/eval/*.py); "
                                  "default: evaluate.default_config().", lock_config=True)
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
