"""Data: the data section of the config (``config.data``) and the registry of sources.

One module per source, chosen by ``config.data.name`` through ``SOURCES``:

  from leave_one_out import data
  source = data.create_train_source(cfg)   # this host's batches: source.iterate(step)
  split = data.create_eval_source(cfg.data, "validation", image_size=224).load()

A source is a module (or any object) with five functions:

  validate(d)                      the fields of the data section ``d`` it uses; ValueError naming
                                   ``config.data.<field>``; reads no data
  check_ready(d, splits)           DataError unless the data is there (metadata only); splits
                                   maps a field of ``d`` to the split it names
  describe(d) -> str               one line for logs and tables
  train_source(cfg)                this host's training batches: ``steps_per_epoch`` and
                                   ``iterate(start_step)`` of {"image": uint8 [B / hosts, S0, S0,
                                   3], "aspect": float32 [B / hosts], "valid": bool [B / hosts]}
  eval_source(d, split, *, image_size, batch_size, num_examples, crop_fraction, skip_corrupt,
              resize_method, antialias, process_index, process_count, seed)
                                   a labelled split (``leave_one_out.data.pipeline.eval_split``)

A source rendered in memory at ``data.image_size`` (nothing decoded from files) sets
``RENDERED = True``: evaluation then reads it at that size, as pretraining stored it.

Adding a dataset is one module plus one line in ``SOURCES``; ``register`` adds one at run time
(tests do). A name that is not registered is a tensorflow-datasets dataset
(``leave_one_out.data.tfds``). What the sources share is the package ``pipeline/``: TensorFlow
on demand (``tf_data``), decoding (``decode``), the tf.data batching of image files (``host``),
in-memory batches (``memory``), labelled evaluation splits (``eval_split``), class lists
(``classes``) and device prefetch (``prefetch``).

The data section: ``default_config()`` holds every field with its default (ImageNet-100 as
docs/method.md's recipe reads it; configs/demo.py switches to the digits); fields that
only some sources read say so. ``validate`` checks the types and ranges of every field, then
asks the source to check what it needs. Nothing is read from disk there except what a source's
check needs (a tfds name is looked up in tfds' registry).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections
from absl import logging

from leave_one_out import fields

RESIZE_METHODS = ("bilinear", "bicubic", "area")  # data.resize_method
ANTIALIAS = ("auto", "always", "never")  # data.antialias


class DataError(ValueError):
  """A problem with the data the user must fix: unknown dataset, data not prepared, class-list
  mismatch, empty split or folder, undecodable image (with ``data.skip_corrupt = False``),
  a missing optional dependency."""


SOURCES: dict[str, Any] = {  # config.data.name -> the source: a module path or an object
  "synthetic": "leave_one_out.data.synthetic",
  "folder": "leave_one_out.data.folder",
  "imagenet100": "leave_one_out.data.imagenet100",
  "photos": "leave_one_out.data.photos",
  "digits": "leave_one_out.data.digits",
}
DEFAULT_SOURCE = "leave_one_out.data.tfds"  # every other name: a tensorflow-datasets dataset


def register(name: str, source: Any) -> None:
  """Adds (or replaces) the source ``name``: a module path or an object with the five
  functions of this package's docstring."""
  SOURCES[name] = source


def source(name: str):
  """The source that implements ``config.data.name == name``."""
  entry = SOURCES.get(name, DEFAULT_SOURCE)
  return importlib.import_module(entry) if isinstance(entry, str) else entry


# ------------------------------------------------------------------ the data section


def default_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  # A registered source (leave_one_out.data.SOURCES): synthetic (the embedded shapes dataset),
  # digits (scikit-learn's handwritten digits on a canvas), imagenet100 (tfds imagenet2012, the
  # CMC 100 classes), folder (data_dir/<split>/<class>/, every jpg|jpeg|png|bmp|gif|webp below a
  # class folder), or else any tensorflow-datasets image dataset: "name", "name/config" or
  # "name:version".
  d.name = "imagenet100"
  d.data_dir = ""  # tfds: its data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets; gs://
  #                  works); folder: the root holding <split>/<class>/ images
  d.train_split = "train"  # tfds split (slicing works: "train[:90%]") or folder subdirectory
  d.eval_split = "validation"  # the split evaluation pipelines read by default (a folder's
  #                              "validation" also finds val/: leave_one_out.data.folder)
  d.classes = ""  # tfds / folder: keep only these classes, relabelled 0..K-1 in sorted name
  #                 order: "" = all; "imagenet100" = the CMC list; else a text file, one per line
  d.image_size = 256  # S0: side of the uint8 image the host sends per example (the whole image
  #                     is resized to S0 x S0; its original aspect ratio goes along)
  d.num_train = 4096  # generated sources (synthetic, photos, digits): training-set size
  d.synthetic_light = 0.5  # synthetic only: strength of the light from above, in [0, 1)
  #                          (leave_one_out/data/synthetic/scenes.py); 0 = evenly lit scenes, where
  #                          orientation shows only in the object's shape
  d.synthetic_hue_jitter = 10.0  # synthetic only: per-image object hue jitter, +- degrees in
  #                                [0, 30]; 30 = hues uniform over the colour circle
  d.synthetic_hue_bins = 0  # synthetic only: > 0 adds the evaluation label "hue", the exact
  #                           hue in this many bins (fine-grained colour); 0 = no such label
  d.num_examples = 0  # examples per epoch over all hosts; 0 = the split's size (tfds metadata,
  #                     folder listing, known ImageNet-100 sizes, else counted)
  d.shuffle_buffer = 10_000  # tfds: encoded records per host in the shuffle buffer (about 110 kB
  #                            each for ImageNet); folders are shuffled exactly
  d.skip_corrupt = True  # an unreadable image is skipped, logged, counted and masked out of the
  #                        loss; False: an error naming the file
  d.decode_threads = 0  # parallel read/decode/resize calls per host; 0 = tf.data AUTOTUNE
  d.host_prefetch = 2  # decoded batches tf.data keeps ready per host
  d.resize_method = "bilinear"  # bilinear | bicubic | area: the host's resize filter
  d.antialias = "auto"  # auto | always | never. auto: large JPEGs are decoded at 1/2-1/8 scale
  #                       in the DCT domain; a side still shrinking > 2x gets a box filter
  #                       (area), else plain resize_method (docs/data.md)
  d.image_key = "image"  # tfds feature holding the image
  d.label_key = "label"  # tfds feature holding the class label (class filter, evaluation)
  d.eval_crop_fraction = 0.875  # evaluation: shorter side -> S / this, centre crop S x S
  return d


def validate(d: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the data section ``d``."""
  check = fields.Section(d, "config.data")
  for field in ("name", "train_split", "eval_split", "image_key", "label_key"):
    check.string(field)
  for field in ("data_dir", "classes"):
    check.string(field, empty=True)
  check.integer("image_size", 1)
  check.integer("num_train", 1)
  check.integer("num_examples", 0)
  check.integer("synthetic_hue_bins", 0)
  check.integer("shuffle_buffer", 1)
  check.integer("decode_threads", 0)
  check.integer("host_prefetch", 1)
  check.boolean("skip_corrupt")
  check.one_of("resize_method", RESIZE_METHODS)
  check.one_of("antialias", ANTIALIAS)
  check.number("eval_crop_fraction", 0.0, 1.0, low_open=True)
  _source_checks(d)


def check_one_batch(count: int, batch_size: int, what: str) -> None:
  """DataError unless ``count`` examples (``what`` names them) fill one global batch: the one
  check of it, at start-up (``config.validate``: ``data.num_examples``) and wherever a source
  learns its size (the embedded datasets' ``data.num_train``, a folder's listing, tfds)."""
  if count < batch_size:
    raise DataError(
      f"{what} ({count}) must hold at least one global batch "
      f"(config.train.batch_size = {batch_size}); lower the batch size or add data"
    )


def _source_checks(d) -> None:
  """The source's own checks of the data section (after ``validate``'s common ones)."""
  try:
    source(d.name).validate(d)
  except ValueError as e:
    if d.name in SOURCES:
      raise
    raise ValueError(f"{e} (the registered sources are {tuple(SOURCES)})") from e


def check_ready(d, fields=("train_split", "eval_split")) -> None:
  """DataError unless the splits that these fields of ``d`` name can be read."""
  source(d.name).check_ready(d, {field: d[field] for field in fields})


def describe(d) -> str:
  """One line, e.g. "tfds caltech_birds2011 (train / test)"."""
  return f"{source(d.name).describe(d)} ({d.train_split} / {d.eval_split})"


def create_train_source(cfg):
  """The training source named by ``cfg.data.name``, for this host."""
  train = source(cfg.data.name).train_source(cfg)
  logging.info("Training data: %r", train)
  return train


def create_eval_source(
  d,
  split: str | None = None,
  *,
  image_size: int,
  batch_size: int = 256,
  num_examples: int = 0,
  crop_fraction: float | None = None,
  process_index: int = 0,
  process_count: int = 1,
  seed: int = 0,
):
  """A labelled split (default ``d.eval_split``) in a fixed order.

  Args:
    d: a data section (````default_config()```` layout).
    split: a split name (tfds slicing works: "train[:10%]") or folder subdirectory.
    image_size: S, the side of the returned images (image files: shorter side resized to
      ``S / crop_fraction``, centre S x S crop; embedded datasets: rendered at S).
    batch_size: examples per yielded batch.
    num_examples: the first N examples of the split's fixed order (0 = all). tfds splits are
      stored shuffled; a folder's files are put in a fixed pseudo-random order (``seed``) first.
    crop_fraction: centre-crop fraction (default ``d.eval_crop_fraction``; 1.0 = resize the
      shorter side to S and crop, e.g. for ImageNet-C whose images are already crops).
    process_index, process_count: read only this host's contiguous share.
    seed: the order of a folder; the generator seed of an embedded dataset.
  Labels are the dataset's (after ``data.classes``: 0..K-1 in sorted class-name order; a
  folder's evaluation split uses the training split's class list).
  """
  return source(d.name).eval_source(
    d,
    split or d.eval_split,
    image_size=image_size,
    batch_size=batch_size,
    num_examples=num_examples,
    crop_fraction=d.eval_crop_fraction if crop_fraction is None else crop_fraction,
    skip_corrupt=d.skip_corrupt,
    resize_method=d.resize_method,
    antialias=d.antialias,
    process_index=process_index,
    process_count=process_count,
    seed=seed,
  )


def load_eval_arrays(d, split: str | None = None, **kwargs) -> dict:
  """``create_eval_source(...).load()`` plus "num_classes" and "class_names"."""
  split_source = create_eval_source(d, split, **kwargs)
  out = split_source.load()
  out.update(num_classes=split_source.num_classes, class_names=split_source.class_names)
  return out
