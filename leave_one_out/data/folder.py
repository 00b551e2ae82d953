"""Image folders: ``<data_dir>/<split>/<class>/*.{jpg,jpeg,png}`` (local or gs://).

Classes are the sorted subdirectory names of the training split (labels 0..K-1); an evaluation
split uses the training split's labels. ``config.data.classes`` keeps only some class
directories. Training (``FolderSource``) reads every file by position with exact shuffling:

Epoch ``e`` is the permutation ``index_shuffle(seed=(seed, e))`` of all N files; global batch
``s`` of the epoch is positions ``[s * B, (s + 1) * B)``, host ``p`` takes its contiguous
``B / hosts`` slice (the order of ``jax.make_array_from_process_local_data``). The stream is one
endless tf.data pipeline indexed by position, so resuming at any step costs nothing and the
batches do not depend on the number of hosts. The last ``N mod B`` positions of every epoch are
dropped (different files each epoch). Unreadable files are masked out (``leave_one_out.data.pipeline.host``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np
from absl import logging

from leave_one_out import fields
from leave_one_out.data import DataError
from leave_one_out.data.pipeline import classes as class_lists
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import host
from leave_one_out.data.pipeline import tf_data

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _isdir(path: str) -> bool:
  return tf_data.tf().io.gfile.isdir(path)


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The files of one split of an image folder: ``files[i]`` has label ``labels[i]``."""

  files: np.ndarray  # str [N], sorted by class, then file name
  labels: np.ndarray  # int32 [N], indices into class_names
  class_names: tuple[str, ...]  # sorted
  ignored: int  # files with other extensions


def list_image_folder(
  root: str, split: str, classes=None, class_names: tuple[str, ...] | None = None
) -> FolderListing:
  """Lists ``root/split/<class>/*.{jpg,jpeg,png}`` (case-insensitive; local or gs://).

  Args:
    root, split: the folder root and the split subdirectory.
    classes: keep only these class directories (all must exist), or None for every one.
    class_names: the label order (e.g. the training split's classes, so an evaluation split's
      labels agree with it); every class directory kept must be in it. None: the sorted kept
      classes.
  Raises:
    DataError: missing root or split, no class directories, a class-list mismatch, no images.
  """
  tf = tf_data.tf()
  if not root:
    raise DataError(
      "config.data.data_dir must name the image folder root "
      "(root/<split>/<class>/*.jpg) when config.data.name='folder'"
    )
  if not _isdir(root):
    raise DataError(f"image folder root {root} does not exist (config.data.data_dir)")
  split_dir = os.path.join(root, split)
  if not _isdir(split_dir):
    found = sorted(
      d.rstrip("/") for d in tf.io.gfile.listdir(root) if _isdir(os.path.join(root, d))
    )
    raise DataError(
      f"image folder {root} has no split {split!r} (found: {found or 'nothing'}); "
      "expected root/<split>/<class>/*.jpg"
    )
  dirs = sorted(
    d.rstrip("/")
    for d in tf.io.gfile.listdir(split_dir)
    if not d.startswith(".") and _isdir(os.path.join(split_dir, d))
  )
  if not dirs:
    raise DataError(
      f"{split_dir} holds no class subdirectories; expected {split_dir}/<class>/*.jpg|png"
    )
  if classes is not None:
    missing = set(classes) - set(dirs)
    if missing:
      raise class_lists.class_mismatch(split_dir, missing, dirs)
    dirs = sorted(classes)
  names = tuple(dirs) if class_names is None else tuple(class_names)
  index = {n: i for i, n in enumerate(names)}
  unknown = [d for d in dirs if d not in index]
  if unknown:
    raise class_lists.class_mismatch(
      f"the reference class list ({len(names)} classes)", unknown, names
    )
  files, labels, ignored, empty = [], [], 0, []
  for d in dirs:
    entries = sorted(tf.io.gfile.listdir(os.path.join(split_dir, d)))
    kept = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)]
    ignored += len([e for e in entries if not e.endswith("/")]) - len(kept)
    if not kept:
      empty.append(d)
    files += [os.path.join(split_dir, d, e) for e in kept]
    labels += [index[d]] * len(kept)
  if not files:
    raise DataError(
      f"{split_dir} holds no images ({'/'.join(IMAGE_EXTENSIONS)}) in its "
      f"{len(dirs)} class directories"
    )
  if empty:
    logging.warning(
      "%d class directories of %s hold no images, e.g. %s",
      len(empty),
      split_dir,
      ", ".join(empty[:5]),
    )
  if ignored:
    logging.info(
      "%s: ignored %d files without an image extension %s", split_dir, ignored, IMAGE_EXTENSIONS
    )
  return FolderListing(np.asarray(files), np.asarray(labels, np.int32), names, ignored)


class FolderSource(host.HostPipeline):
  """Training batches from a listed set of image files (an image folder).

  Position ``pos`` (host-local, ``step * local_batch + k``) reads the file at place
  ``(step mod steps_per_epoch) * B + host * local_batch + k`` of epoch ``step //
  steps_per_epoch``'s permutation ``index_shuffle(seed=(seed, epoch))``: one endless tf.data
  pipeline, random access by position, so ``iterate(s)`` starts at step ``s`` for free.
  """

  def __init__(self, files, *, num_examples: int = 0, **kwargs):
    self.files = np.asarray(files)
    super().__init__(num_examples=num_examples or len(self.files), **kwargs)
    if self.num_examples > len(self.files):
      raise DataError(
        f"config.data.num_examples={self.num_examples} exceeds the "
        f"{len(self.files)} files of {self.description}"
      )

  def _file_index(self, pos):
    """tf: the file index of host-local position(s) ``pos`` (int64)."""
    tf = tf_data.tf()
    pos = tf.cast(pos, tf.int64)
    b, spe = self.local_batch, self.steps_per_epoch
    step, k = pos // b, pos % b
    epoch, within = step // spe, step % spe
    place = within * self.global_batch + self.process_index * b + k
    seed = tf.stack([tf.constant(self.seed, tf.int64), epoch], axis=-1)
    return tf.random.experimental.index_shuffle(
      place, seed=seed, max_index=tf.constant(len(self.files) - 1, tf.int64)
    )

  def file_indices(self, step: int) -> np.ndarray:
    """File indices of this host's examples at ``step`` (for tests and tools)."""
    tf = tf_data.tf()
    b = self.local_batch
    pos = tf.range(step * b, (step + 1) * b, dtype=tf.int64)
    return np.stack([int(self._file_index(p)) for p in pos])

  def describe(self, pos: int) -> str:
    return str(self.files[int(self._file_index(int(pos)))])

  def _raw(self, start_pos, count):
    tf = tf_data.tf()
    out = []
    for pos in range(start_pos, start_pos + count):
      path = self.describe(pos)
      try:
        data = tf.io.gfile.GFile(path, "rb").read()
      except Exception:  # pylint: disable=broad-except
        data = b""
      out.append((path, data))
    return out

  def _records(self, start_step: int):
    tf = tf_data.tf()
    paths = tf.constant(self.files)
    b = self.local_batch
    end = np.iinfo(np.int64).max // 2

    def record(pos):
      path = tf.gather(paths, self._file_index(pos))
      return {"encoded": tf.io.read_file(path), "pos": pos}

    ds = tf.data.Dataset.range(start_step * b, end)
    threads = self.decode_threads or tf.data.AUTOTUNE
    return ds.map(tf_data.tf_function(record), num_parallel_calls=threads, deterministic=True)

  def iterate(self, start_step: int = 0) -> Iterator[dict]:
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    start_step = int(start_step)
    ds = self._decoded(self._records(start_step))
    yield from self._aligned(ds.as_numpy_iterator(), start_step * self.local_batch, None)


# ------------------------------------------------------------------------------ the source


def validate(d) -> None:
  """The fields an image folder needs (``leave_one_out.data`` calls it; nothing is read)."""
  fields.Section(d, "config.data").check(
    d.data_dir.strip(),
    "data_dir",
    "must name the image folder root (root/<split>/<class>/*.jpg) when config.data.name='folder'",
  )


def check_ready(d, splits: dict) -> None:
  """DataError unless every split directory exists (metadata only)."""
  for field, split in splits.items():
    path = os.path.join(d.data_dir, split)
    if not _isdir(path):
      raise DataError(
        f"image folder split {path} does not exist (config.data.{field}={split!r}, "
        f"data_dir={d.data_dir!r}); expected <data_dir>/<split>/<class>/*.jpg"
      )


def describe(d) -> str:
  return f"image folder {d.data_dir}"


def train_source(cfg) -> FolderSource:
  """This host's training batches from ``data_dir/train_split``."""
  d = cfg.data
  listing = list_image_folder(d.data_dir, d.train_split, class_lists.class_list(d.classes))
  return FolderSource(
    listing.files,
    num_examples=d.num_examples,
    description=f"image folder {os.path.join(d.data_dir, d.train_split)}",
    **host.pipeline_kwargs(cfg),
  )


def eval_source(
  d,
  split: str,
  *,
  num_examples: int,
  process_index: int,
  process_count: int,
  seed: int,
  **common_kwargs,
) -> eval_split.EvalSource:
  """``split`` in a fixed pseudo-random order (``seed``), labelled like the training split."""
  tf = tf_data.tf()
  keep = class_lists.class_list(d.classes)
  reference = None
  if split != d.train_split and _isdir(os.path.join(d.data_dir, d.train_split)):
    reference = list_image_folder(d.data_dir, d.train_split, keep).class_names
  listing = list_image_folder(d.data_dir, split, keep, class_names=reference)
  order = np.random.default_rng(seed).permutation(len(listing.files))
  if num_examples:
    order = order[:num_examples]
  order = np.array_split(order, process_count)[process_index]
  files, labels = listing.files[order], listing.labels[order]

  def records():
    ds = tf.data.Dataset.from_tensor_slices({"path": files, "label": labels})
    read = tf_data.tf_function(
      lambda r: {"encoded": tf.io.read_file(r["path"]), "label": r["label"]}
    )
    return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  return eval_split.EvalSource(
    records,
    num_examples=len(files),
    num_classes=len(listing.class_names),
    class_names=listing.class_names,
    description=f"image folder {os.path.join(d.data_dir, split)}",
    **common_kwargs,
  )
