"""The evaluation dataset (``eval_config.dataset``): which data, which labels, how many images.

Every source is read through ``leave_one_out.data.create_eval_source``, from a data section
(``leave_one_out.data`` layout): ``dataset.data`` when set (configs/eval/tfds.py:<name>,
configs/eval/folder.py:<root>), else the pretraining run's own ``config.data`` from the
checkpoint. So a source registered in ``leave_one_out.data.SOURCES`` is evaluated without any
change here. The evaluation's training split (probe training set, kNN bank, few-shot pool) is
the section's ``train_split``, its test split (every reported number) the ``eval_split``.

Labels: every label the source yields ("label", the class, plus any other, e.g. the embedded
dataset's "shape", "color" and "texture"); "label" is left out where another label equals it on
both splits (the embedded dataset's "label" is its "shape"). The primary label is the one kNN,
few-shot and the corruption protocols use.

Image size: image files are decoded straight to the model's input size S (shorter side to
S / ``eval_crop_fraction``, centre crop, on the host). Sources rendered in memory
(a source with ``RENDERED = True``, ``leave_one_out.data``) are rendered at the run's ``data.image_size``, the size pretraining stored
them at, and resized to S by the forward pass, as pretraining saw them (whole image, no crop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re

import ml_collections
import numpy as np

from leave_one_out import data as data_lib
from leave_one_out import extract
from leave_one_out import fields

SPLIT_FIELDS = {"train": "train_split", "test": "eval_split"}  # evaluation split -> data field


def rendered(d) -> bool:
  """Whether the data section's source renders its images in memory (``RENDERED = True``)."""
  return bool(getattr(data_lib.source(d.name), "RENDERED", False))


def default_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.data = None  # a data section (leave_one_out.data layout, e.g. configs/data/<name>.py);
  #                None = the pretraining run's own config.data, read from the checkpoint
  c.labels = ()  # labels to probe, one table column each; () = every label of the source
  #                ("label" left out where another label equals it)
  c.primary_label = ""  # the label of kNN, few-shot and corruption; "" = "label" (or its twin)
  c.num_train = 2000  # training-split images read; 0 = the whole split (tfds: the first N in
  #                     stored order; folder: a fixed pseudo-random order drawn with seed)
  c.num_test = 1000  # test-split images read (every reported number); 0 = the whole split
  c.image_size = 0  # side images are read at; 0 = the model's input size (rendered sources:
  #                   the run's data.image_size, resized to the model's input by the forward pass)
  c.seed = -1  # folder order and rendered-dataset generator; -1 = the pretraining seed
  return c


def validate(c: ml_collections.ConfigDict) -> None:
  """Checks ``c.dataset`` (``c`` is the whole eval config); the data section is checked as
  ``leave_one_out.data.validate`` does, its fields named ``eval_config.dataset.data``."""
  check = fields.Section(c, "eval_config")
  s = c.dataset
  check.size_or_all("dataset.num_train", 2)
  check.size_or_all("dataset.num_test", 2)
  check.integer("dataset.image_size", 0)
  check.integer("dataset.seed", -1)
  labels = s.labels
  if (
    not isinstance(labels, (tuple, list))
    or not all(isinstance(l, str) and l for l in labels)
    or len(set(labels)) != len(labels)
  ):
    check.fail(
      "dataset.labels",
      f"must be a tuple of distinct label names (() = every label of the source), got {labels!r}",
    )
  if not isinstance(s.primary_label, str):
    check.fail("dataset.primary_label", f"must be a label name or '', got {s.primary_label!r}")
  if labels and s.primary_label and s.primary_label not in labels:
    check.fail(
      "dataset.primary_label",
      f"must be one of dataset.labels {tuple(labels)}, got {s.primary_label!r}",
    )
  if s.data is not None:
    _validate_data(s.data)


def _validate_data(d) -> None:
  check = fields.Section(d, "eval_config")  # (its own fields are data.validate's to check)
  if not isinstance(d, ml_collections.ConfigDict):
    check.fail(
      "dataset.data",
      "must be None (the pretraining run's data) or a data section "
      "(the layout of leave_one_out.data.default_config(), e.g. "
      f"configs/data/<name>.py's get_config()), got {type(d).__name__}",
    )
  missing = sorted(set(data_lib.default_config()) - set(d))
  if missing:
    check.fail("dataset.data", f"lacks the fields {missing} of data.default_config()")
  with _field_names(True):
    data_lib.validate(d)
  if d.train_split.strip() == d.eval_split.strip():
    check.fail(
      "dataset.data.eval_split",
      f"must differ from dataset.data.train_split (both "
      f"{d.eval_split!r}): probes would be tested on their own training images. Slice "
      "one split instead, e.g. train_split='train[:80%]', eval_split='train[80%:]'",
    )


@contextlib.contextmanager
def _field_names(explicit: bool):
  """Errors of the data pipeline name ``config.data.<field>``; the evaluation's own section is
  ``eval_config.dataset.data.<field>``, the run's section is said to be the run's."""
  try:
    yield
  except (data_lib.DataError, ValueError) as e:
    if explicit:
      message = re.sub(r"(?<![\w.])config\.data\.", "eval_config.dataset.data.", str(e))
    else:
      message = (
        f"{e} [the pretraining run's data section (config.data of its checkpoint); set "
        "eval_config.dataset.data to evaluate on other data]"
      )
    raise type(e)(message) from e


def data_section(c, cfg) -> tuple[ml_collections.ConfigDict, bool]:
  """(the data section evaluated, whether it is ``eval_config.dataset.data``)."""
  if c.dataset.data is not None:
    return c.dataset.data, True
  return cfg.data, False


def read_size(d, model_size: int, override: int = 0) -> int:
  """The side images of the data section ``d`` are read at (module docstring)."""
  if override:
    return int(override)
  return int(d.image_size) if rendered(d) else int(model_size)


def check_ready(c, cfg=None) -> None:
  """DataError unless both splits can be read (metadata only; nothing is downloaded). Without
  ``cfg`` only ``dataset.data`` is checked (before the model loads)."""
  if c.dataset.data is None and cfg is None:
    return
  d, explicit = data_section(c, cfg)
  with _field_names(explicit):
    data_lib.check_ready(d)


def to_model_input(images: np.ndarray, size: int) -> np.ndarray:
  """Images at the model's input size: uint8 kept as it is when already S x S (the forward pass
  scales it to [0, 1] on device, as ``extract.preprocess`` does), else
  ``extract.preprocess`` (resize + centre crop, float32 [0, 1])."""
  images = np.asarray(images)
  if images.dtype == np.uint8 and images.shape[1:3] == (size, size):
    return images
  return extract.preprocess(images, size)


@dataclasses.dataclass
class Split:
  """One evaluation split: images as read, labels (every label the source yields)."""

  images: np.ndarray  # uint8 [N, S0, S0, 3] as read (S0 = read_size)
  labels: dict[str, np.ndarray]  # name -> int32 [N]
  num_classes: dict[str, int]
  class_names: dict[str, tuple | None]
  description: str
  model_size: int  # S, the model's input side

  def __len__(self) -> int:
    return len(self.images)

  @functools.cached_property
  def model_input(self) -> np.ndarray:
    """uint8 or float32 `[N, S, S, 3]` (``to_model_input``)."""
    return to_model_input(self.images, self.model_size)


def read(
  c, cfg, which: str, *, image_size: int, crop_fraction: float | None = None, batch_size: int = 256
) -> tuple[dict, object]:
  """``(arrays, source)``: ``which`` ("train" or "test") of the evaluated data section."""
  d, explicit = data_section(c, cfg)
  seed = cfg.seed if c.dataset.seed < 0 else c.dataset.seed
  n = c.dataset.num_train if which == "train" else c.dataset.num_test
  with _field_names(explicit):
    source = data_lib.create_eval_source(
      d,
      d[SPLIT_FIELDS[which]],
      image_size=image_size,
      batch_size=batch_size,
      num_examples=n,
      crop_fraction=crop_fraction,
      seed=seed,
    )
    return source.load(), source


def load(c, cfg) -> tuple[Split, Split, tuple[str, ...], str]:
  """(train, test, labels, primary label) of the evaluation dataset (module docstring).

  Raises ValueError where ``dataset.labels`` or ``dataset.primary_label`` names a label the
  source does not have.
  """
  d, _ = data_section(c, cfg)
  model_size = int(cfg.augment.image_size)
  size = read_size(d, model_size, c.dataset.image_size)
  splits = {}
  for which in ("train", "test"):
    arrays, source = read(c, cfg, which, image_size=size, batch_size=c.batch_size)
    labels = {k: np.asarray(v, np.int32) for k, v in arrays.items() if k != "image"}
    splits[which] = (arrays["image"], labels, source)
  train_images, train_labels, train_source = splits["train"]
  test_images, test_labels, _ = splits["test"]
  names = tuple(train_labels)
  twin = next(
    (
      n
      for n in names
      if n != "label"
      and "label" in names
      and np.array_equal(train_labels[n], train_labels["label"])
      and np.array_equal(test_labels[n], test_labels["label"])
    ),
    None,
  )
  num_classes, class_names = {}, {}
  for name in names:
    if name in ("label", twin):
      num_classes[name] = int(train_source.num_classes)
      class_names[name] = (
        None if train_source.class_names is None else tuple(train_source.class_names)
      )
    else:  # the data interface gives the class count of "label" only
      num_classes[name] = int(max(train_labels[name].max(), test_labels[name].max())) + 1
      class_names[name] = None
  labels, primary = select_labels(c, names, twin)
  description = data_lib.describe(d)
  make = lambda images, y: Split(images, y, num_classes, class_names, description, model_size)
  return make(train_images, train_labels), make(test_images, test_labels), labels, primary


def select_labels(c, available: tuple[str, ...], twin: str | None) -> tuple[tuple[str, ...], str]:
  """(labels, primary) from ``dataset.labels`` / ``primary_label`` and the source's labels."""
  check = fields.Section(c, "eval_config")
  wanted = tuple(c.dataset.labels)
  if wanted:
    missing = [l for l in wanted if l not in available]
    if missing:
      check.fail(
        "dataset.labels",
        f"has {missing}, which the evaluation dataset does not provide; it has {list(available)}",
      )
    labels = wanted
  else:
    labels = tuple(l for l in available if not (l == "label" and twin))
  primary = c.dataset.primary_label
  if not primary:
    primary = next((l for l in ("label", twin) if l in labels), labels[0])
  if primary not in labels:
    check.fail(
      "dataset.primary_label", f"{primary!r} is not among the evaluated labels {list(labels)}"
    )
  return labels, primary


def crop_source(c, cfg, train: Split, labels, *, image_size: int = 0) -> np.ndarray:
  """The training split as stored squares for random crops (the MoCo protocol): uint8
  `[N, S0, S0, 3]`, read with crop fraction 1.0 (shorter side to S0, centre square), in the
  order of ``train``.

  S0 = ``image_size``, else S / ``eval_crop_fraction`` (256 for 224), so that the centre S x S
  of a square is exactly the test-time centre crop; rendered sources: their read size.
  """
  d, _ = data_section(c, cfg)
  if not image_size:
    image_size = (
      read_size(d, train.model_size, c.dataset.image_size)
      if rendered(d)
      else round(train.model_size / d.eval_crop_fraction)
    )
  if image_size == train.images.shape[1] and rendered(d):
    return train.images
  arrays, _ = read(
    c, cfg, "train", image_size=image_size, crop_fraction=1.0, batch_size=c.batch_size
  )
  for name in labels:
    if not np.array_equal(arrays.get(name), train.labels[name]):
      raise data_lib.DataError(
        f"{train.description}: the training split read again at {image_size} px does not "
        f"come in the same order (label {name!r} differs); the source's evaluation order "
        "must be fixed"
      )
  return arrays["image"]
