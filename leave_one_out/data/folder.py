"""Image folders: ``<data_dir>/<split>/<class>/**/<image>`` (local or gs://), as torchvision's
``ImageFolder`` reads them.

A class is a subdirectory of the split; its images are every image file below it, at any
depth, in sorted path order. Image files: .jpg, .jpeg, .png, .bmp, .gif (its first frame) and
.webp, case-insensitive (``IMAGE_EXTENSIONS``: what TensorFlow decodes). A split without class
subdirectories whose images lie at its top level is one unlabelled class (``UNLABELLED``; fine
for pretraining, meaningless for a probe). What is skipped (other files, hidden files and
folders, images at the top level beside class folders) is counted by reason and logged with the
number of images found. The split ``validation`` (the data section's default ``eval_split``)
also finds a ``val/`` directory (torchvision's ImageNet layout), and ``val`` a ``validation/``.

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

import collections
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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
UNLABELLED = "(unlabelled)"  # the one class of a split whose images lie at its top level
SPLIT_ALIASES = {"validation": "val", "val": "validation"}  # tfds' name <-> torchvision's
LAYOUT = "<data_dir>/<split>/<class>/**/*.jpg|png|..."


def _isdir(path: str) -> bool:
  return tf_data.tf().io.gfile.isdir(path)


def _walk_unsorted(top: str):
  if "://" in top:
    return tf_data.tf().io.gfile.walk(top)
  return os.walk(top, followlinks=True)


def _walk(top: str):
  """(directory, subdirectories, files) below ``top``, in sorted order; symlinks followed."""
  for dirpath, dirs, files in sorted(_walk_unsorted(top)):
    yield dirpath, [d.rstrip("/") for d in dirs], sorted(files)


def _listdir(path: str) -> tuple[list[str], list[str]]:
  """(sorted subdirectories, sorted files) of ``path`` (its top level only)."""
  for _, dirs, files in _walk_unsorted(path):  # top-down: ``path`` itself comes first
    return sorted(d.rstrip("/") for d in dirs), sorted(files)
  return [], []


def split_dir(root: str, split: str) -> str | None:
  """The directory of ``split`` under ``root`` (``SPLIT_ALIASES`` tried second), or None."""
  for name in (split, SPLIT_ALIASES.get(split)):
    if name and _isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  return None


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The files of one split of an image folder: ``files[i]`` has label ``labels[i]``."""

  files: np.ndarray  # str [N], sorted by class, then path
  labels: np.ndarray  # int32 [N], indices into class_names
  class_names: tuple[str, ...]  # sorted; (UNLABELLED,) for images at the split's top level
  skipped: dict[str, int]  # reason -> files left out
  directory: str = ""  # the split's directory (``SPLIT_ALIASES`` resolved)

  @property
  def ignored(self) -> int:
    return sum(self.skipped.values())


class _Skipped:
  """Files left out of a listing, counted by reason (non-image files by extension)."""

  def __init__(self):
    self.counts = collections.Counter()
    self.extensions = collections.Counter()

  def images(self, directory: str, files: list[str]) -> list[str]:
    """The image files among ``files`` (names) of ``directory``; the rest are counted."""
    kept = []
    for name in files:
      if name.startswith("."):
        self.counts["hidden files"] += 1
      elif name.lower().endswith(IMAGE_EXTENSIONS):
        kept.append(os.path.join(directory, name))
      else:
        self.counts["not an image file"] += 1
        self.extensions[os.path.splitext(name)[1].lower() or "(no extension)"] += 1
    return kept

  def describe(self) -> str:
    parts = []
    for reason, n in sorted(self.counts.items()):
      detail = ""
      if reason == "not an image file":
        detail = " (" + ", ".join(f"{e} {c}" for e, c in self.extensions.most_common(5)) + ")"
      parts.append(f"{n} {reason}{detail}")
    return "; ".join(parts)


def _class_images(class_dir: str, skipped: _Skipped) -> list[str]:
  """Every image file below ``class_dir`` (hidden folders skipped), in sorted path order."""
  found = []
  for dirpath, dirs, files in _walk(class_dir):
    rel = os.path.relpath(dirpath, class_dir)
    if any(part.startswith(".") for part in rel.split(os.sep) if part != "."):
      skipped.counts["hidden files"] += len(files)
      continue
    found += skipped.images(dirpath, files)
  return found


def list_image_folder(
  root: str, split: str, classes=None, class_names: tuple[str, ...] | None = None
) -> FolderListing:
  """Lists the images of ``root/split`` (module docstring; local or gs://).

  Args:
    root, split: the folder root and the split subdirectory (``SPLIT_ALIASES`` apply).
    classes: keep only these class directories (all must exist), or None for every one.
    class_names: the label order (e.g. the training split's classes, so an evaluation split's
      labels agree with it); every class directory kept must be in it. None: the sorted kept
      classes.
  Raises:
    DataError: missing root or split, a class-list mismatch, no images.
  """
  if not root:
    raise DataError(
      f"config.data.data_dir must name the image folder root ({LAYOUT}) when "
      "config.data.name='folder'"
    )
  if not _isdir(root):
    raise DataError(f"image folder root {root} does not exist (config.data.data_dir)")
  where = split_dir(root, split)
  if where is None:
    found = [d for d in _listdir(root)[0] if not d.startswith(".")]
    raise DataError(
      f"image folder {root} has no split {split!r} (found: {found or 'nothing'}); expected {LAYOUT}"
    )
  if where != os.path.join(root, split):
    logging.info("Image folder split %r: reading %s", split, where)
  subdirs, top_files = _listdir(where)
  dirs = [d for d in subdirs if not d.startswith(".")]
  skipped = _Skipped()
  top_images = skipped.images(where, top_files)
  if dirs and top_images:
    skipped.counts["images beside the class folders (at the split's top level)"] += len(top_images)
  if not dirs and top_images and classes is None:
    files, labels, names = top_images, [0] * len(top_images), (UNLABELLED,)
    if class_names is not None and tuple(class_names) != names:
      raise class_lists.class_mismatch(
        f"the reference class list ({len(class_names)} classes)", [UNLABELLED], class_names
      )
    _log_listing(where, files, names, skipped, [])
    return FolderListing(
      np.asarray(files), np.asarray(labels, np.int32), names, dict(skipped.counts), where
    )
  if not dirs:
    raise DataError(
      f"{where} holds no images: expected class subdirectories ({LAYOUT}) or images at its top "
      f"level (one unlabelled class){'; skipped ' + skipped.describe() if skipped.counts else ''}"
    )
  if classes is not None:
    missing = set(classes) - set(dirs)
    if missing:
      raise class_lists.class_mismatch(where, missing, dirs)
    dirs = sorted(classes)
  names = tuple(dirs) if class_names is None else tuple(class_names)
  index = {n: i for i, n in enumerate(names)}
  unknown = [d for d in dirs if d not in index]
  if unknown:
    raise class_lists.class_mismatch(
      f"the reference class list ({len(names)} classes)", unknown, names
    )
  files, labels, empty = [], [], []
  for d in dirs:
    kept = _class_images(os.path.join(where, d), skipped)
    if not kept:
      empty.append(d)
    files += kept
    labels += [index[d]] * len(kept)
  if not files:
    raise DataError(
      f"{where} holds no images ({'/'.join(IMAGE_EXTENSIONS)}) in its {len(dirs)} class "
      f"directories or below them{'; skipped ' + skipped.describe() if skipped.counts else ''}"
    )
  _log_listing(where, files, tuple(dirs), skipped, empty)
  return FolderListing(
    np.asarray(files), np.asarray(labels, np.int32), names, dict(skipped.counts), where
  )


def _log_listing(where, files, dirs, skipped: _Skipped, empty) -> None:
  by_ext = collections.Counter(os.path.splitext(f)[1].lower().lstrip(".") for f in files)
  logging.info(
    "%s: %d images in %d %s (%s)",
    where,
    len(files),
    len(dirs),
    "class" if len(dirs) == 1 else "classes",
    ", ".join(f"{e} {n}" for e, n in by_ext.most_common()),
  )
  if empty:
    logging.warning(
      "%d class directories of %s hold no images, e.g. %s", len(empty), where, ", ".join(empty[:5])
    )
  if skipped.counts:
    log = logging.info if set(skipped.counts) == {"hidden files"} else logging.warning
    log("%s: skipped %s", where, skipped.describe())


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
    f"must name the image folder root ({LAYOUT}) when config.data.name='folder'",
  )


def check_ready(d, splits: dict) -> None:
  """DataError unless every split directory exists (metadata only)."""
  for field, split in splits.items():
    if split_dir(d.data_dir, split) is None:
      also = f" or {SPLIT_ALIASES[split]!r}" if split in SPLIT_ALIASES else ""
      found = [] if not _isdir(d.data_dir) else _listdir(d.data_dir)[0]
      raise DataError(
        f"image folder split {os.path.join(d.data_dir, split)}{also} does not exist "
        f"(config.data.{field}={split!r}, data_dir={d.data_dir!r}; found: "
        f"{[f for f in found if not f.startswith('.')] or 'nothing'}); expected {LAYOUT}"
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
    description=f"image folder {listing.directory}",
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
  train_dir = split_dir(d.data_dir, d.train_split)
  if train_dir is not None and train_dir != split_dir(d.data_dir, split):
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
    description=f"image folder {listing.directory}",
    **common_kwargs,
  )
