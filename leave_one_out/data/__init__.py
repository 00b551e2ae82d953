"""Data: one module per source, chosen by ``config.data.name`` through ``SOURCES``.

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
                                   a labelled split (``leave_one_out.data.evaluation``)

A source rendered in memory at ``data.image_size`` (nothing decoded from files) sets
``RENDERED = True``: evaluation then reads it at that size, as pretraining stored it.

Adding a dataset is one module plus one line in ``SOURCES``; ``register`` adds one at run time
(tests do). A name that is not registered is a tensorflow-datasets dataset
(``leave_one_out.data.tfds``). The host pipeline's parts live in modules of their own:
decoding (``decode``), the tf.data batching shared by image-file sources (``host``), in-memory
batches (``memory``), device prefetch (``prefetch``), class lists (``classes``); the data section
of the config, its defaults and validation, is ``leave_one_out.data.config``.
"""

from __future__ import annotations

import importlib
from typing import Any

from absl import logging

SOURCES: dict[str, Any] = {  # config.data.name -> the source: a module path or an object
    "synthetic": "leave_one_out.data.synthetic",
    "folder": "leave_one_out.data.folder",
    "imagenet100": "leave_one_out.data.imagenet100",
    "photos": "leave_one_out.data.photos",
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


def validate(d) -> None:
  """The source's own checks of the data section (the common ones are ``data.config``'s)."""
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


def create_eval_source(d, split: str | None = None, *, image_size: int, batch_size: int = 256,
                       num_examples: int = 0, crop_fraction: float | None = None,
                       process_index: int = 0, process_count: int = 1, seed: int = 0):
  """A labelled split (default ``d.eval_split``) in a fixed order.

  Args:
    d: a data section (``leave_one_out.data.config.default_config()`` layout).
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
      d, split or d.eval_split, image_size=image_size, batch_size=batch_size,
      num_examples=num_examples,
      crop_fraction=d.eval_crop_fraction if crop_fraction is None else crop_fraction,
      skip_corrupt=d.skip_corrupt, resize_method=d.resize_method, antialias=d.antialias,
      process_index=process_index, process_count=process_count, seed=seed)


def load_eval_arrays(d, split: str | None = None, **kwargs) -> dict:
  """``create_eval_source(...).load()`` plus "num_classes" and "class_names"."""
  split_source = create_eval_source(d, split, **kwargs)
  out = split_source.load()
  out.update(num_classes=split_source.num_classes, class_names=split_source.class_names)
  return out

