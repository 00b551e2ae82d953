"""Evaluation sources: a labelled split in a fixed order, resized and centre-cropped on the host.

``leave_one_out.data.create_eval_source`` returns one of these two, with the same interface:
``iterate()`` yields {"image": uint8 [b, S, S, 3], "label": int32 [b]} (plus any other label
the source has, e.g. the embedded dataset's "color" and "texture"), ``load()`` gives the whole
split as numpy arrays, and ``num_examples``, ``num_classes``, ``class_names`` and
``num_corrupt`` describe it.

- ``EvalSource``: the image-file sources (folders, tfds), decoded and centre-cropped on the host.
- ``ArrayEvalSource``: images already in memory (the embedded datasets).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from absl import logging

from leave_one_out.data import DataError
from leave_one_out.data.pipeline import decode
from leave_one_out.data.pipeline import tf_data


class EvalSource:
  """A labelled split in a fixed order, resized (shorter side) and centre-cropped on the host.

  Attributes:
    num_examples: examples this host yields (before any skipped corrupt image; with several
      hosts on a tfds split, to within one example).
    num_classes, class_names: the label space (names None where the dataset has none).
    num_corrupt: unreadable images skipped so far (``data.skip_corrupt``).
  """

  def __init__(
    self,
    records_fn,
    *,
    num_examples: int,
    num_classes: int,
    class_names,
    image_size: int,
    batch_size: int,
    crop_fraction: float,
    skip_corrupt: bool,
    resize_method: str,
    antialias: str,
    description: str,
  ):
    self._records_fn = records_fn
    self.num_examples = int(num_examples)
    self.num_classes = int(num_classes)
    self.class_names = class_names
    self.image_size = int(image_size)
    self.batch_size = int(batch_size)
    self.crop_fraction = float(crop_fraction)
    self.skip_corrupt = bool(skip_corrupt)
    self.resize_method = resize_method
    self.antialias = antialias
    self.description = description
    self.num_corrupt = 0

  def __repr__(self):
    return (
      f"EvalSource({self.description}: {self.num_examples} examples, "
      f"{self.num_classes} classes, {self.image_size} px)"
    )

  def iterate(self) -> Iterator[dict]:
    """{"image": uint8 [b, S, S, 3], "label": int32 [b]}; the last batch may be smaller."""
    tf = tf_data.tf()
    size, fraction = self.image_size, self.crop_fraction
    method, antialias = self.resize_method, self.antialias

    def decoded(r):
      return {
        "image": decode.decode_center_crop(r["encoded"], size, fraction, method, antialias),
        "label": r["label"],
        "index": r["index"],
      }

    ds = self._records_fn()
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.range(np.iinfo(np.int64).max)))
    ds = ds.map(tf_data.tf_function(lambda r, i: dict(r, index=i)))
    ds = ds.map(
      tf_data.tf_function(decoded), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if self.skip_corrupt:
      ds = ds.ignore_errors()
    ds = ds.batch(self.batch_size).prefetch(2).with_options(tf_data.read_options())
    seen = 0
    try:
      for batch in ds.as_numpy_iterator():
        index = batch.pop("index")
        skipped = int(index[-1]) + 1 - seen - len(index)
        if skipped:
          self.num_corrupt += skipped
          logging.warning(
            "%s: skipped %d unreadable images (%d in all)",
            self.description,
            skipped,
            self.num_corrupt,
          )
        seen = int(index[-1]) + 1
        yield batch
    except tf.errors.OpError as e:
      raise DataError(
        f"{self.description}: an image failed to decode after {seen} examples "
        f"({str(e).splitlines()[0] if str(e) else e}); set "
        "config.data.skip_corrupt=True to skip such images"
      ) from e

  def load(self) -> dict[str, np.ndarray]:
    """The whole split as numpy: {"image": uint8 [N, S, S, 3], "label": int32 [N]}."""
    images, labels = [], []
    for batch in self.iterate():
      images.append(batch["image"])
      labels.append(batch["label"])
    if not images:
      raise DataError(f"{self.description} yielded no images")
    return {"image": np.concatenate(images), "label": np.concatenate(labels).astype(np.int32)}


class ArrayEvalSource:
  """An evaluation split held in memory: ``arrays`` {"image": uint8 [N, S, S, 3], "label":
  int32 [N], other labels [N]} (this host's share of it)."""

  def __init__(
    self, arrays: dict, *, num_classes: int, class_names, batch_size: int, description: str
  ):
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self.num_examples = len(self.arrays["image"])
    self.num_classes = int(num_classes)
    self.class_names = class_names
    self.batch_size = int(batch_size)
    self.description = description
    self.num_corrupt = 0

  def __repr__(self):
    return (
      f"ArrayEvalSource({self.description}: {self.num_examples} examples, "
      f"{self.num_classes} classes)"
    )

  def iterate(self) -> Iterator[dict]:
    for start in range(0, self.num_examples, self.batch_size):
      yield {k: v[start : start + self.batch_size] for k, v in self.arrays.items()}

  def load(self) -> dict[str, np.ndarray]:
    return dict(self.arrays)
