"""Host-side input: one uint8 image per example, this host's share of each global batch.

The host never builds views: the accelerator makes them inside the jitted step
(``leave_one_out.augment``). Every training source has the same interface:

  source.steps_per_epoch            # int, the same on every host
  source.iterate(start_step)        # iterator of this host's batches from ``start_step`` on:
                                    #   {"image": uint8 [B / hosts, S0, S0, 3],
                                    #    "aspect": float32 [B / hosts]}  (original width / height)

and is deterministic for a seed, so the data position of a run is its step: a resumed run
continues its epoch exactly. ``create_train_source(cfg)`` picks the source from ``cfg.data.name``:

- ``"synthetic"``: the embedded dataset (``leave_one_out.synthetic``), held in memory.
- ``"folder"``: an image folder ``<data_dir>/<split>/<class>/*.{jpg,jpeg,png}`` (local or gs://).
- ``"imagenet100"``: the tfds ``imagenet2012`` restricted to the 100 classes of Tian et al. 2019
  (``leave_one_out.imagenet100``), relabelled 0..99.
- any other name: a tensorflow-datasets image dataset (``"caltech_birds2011"``,
  ``"imagenet2012_corrupted/gaussian_noise_3"``, ``"oxford_flowers102:2.1.1"``), read from
  ``data.data_dir`` (default: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; gs:// works).
  Training never downloads: unprepared data is an error naming the ``tfds build`` command.

``data.classes`` keeps only some classes of a tfds or folder dataset (relabelled 0..K-1 in sorted
class-name order): "" (all), "imagenet100", or a text file with one class name per line.

Host pipeline (tf.data): read -> decode -> resize the *whole* image to ``S0 x S0`` (this distorts
non-square images) -> uint8, with the original width / height as "aspect". The on-device
random-resized crop (``augment``) draws its box in original-pixel geometry from that aspect and
renders it from the stored image, so crops have torchvision semantics (area and aspect ratio
relative to the original image); only the resolution is that of ``S0``. Speed: JPEGs at least
twice S0 on both sides are decoded at 1/2..1/8 scale in the DCT domain, and with
``data.antialias = "auto"`` only a side that still shrinks by more than 2x gets a filter (a box
filter, "area"): antialiased resizing costs as much as decoding (docs/data.md has the figures).

Determinism and resume:

- Image folders (and any dataset listed up front): epoch ``e`` is the permutation
  ``index_shuffle(seed=(seed, e))`` of all N files; global batch ``s`` of the epoch is positions
  ``[s * B, (s + 1) * B)``, host ``p`` takes its contiguous ``B / hosts`` slice (the order of
  ``jax.make_array_from_process_local_data``). The stream is one endless tf.data pipeline indexed
  by position, so resuming at any step costs nothing and the batches do not depend on the number
  of hosts. The last ``N mod B`` positions of every epoch are dropped (different files each epoch).
- tfds datasets (sequential TFRecord files, no random access): each host reads its even share of
  the split (``tfds.split_for_jax_process``); epoch ``e`` shuffles the file order and a
  ``shuffle_buffer``-record buffer with seeds derived from ``(seed, e, host)``. Resuming at step
  ``s`` rebuilds epoch ``s // steps_per_epoch`` and skips the first ``s mod steps_per_epoch`` local
  batches as *encoded records* (no decoding): at most one epoch of reading (for the ImageNet-100
  view up to one pass over ImageNet's ~140 GB of records: minutes on local NVMe). Every host takes
  exactly ``steps_per_epoch * B / hosts`` records per epoch; a host whose share is shorter (a
  class-filtered view is not split evenly) wraps around its own shard, repeating a few images.
  The next epoch's pipeline is started in the background before the current one ends.
- ``steps_per_epoch = num_examples // B`` over all hosts, where ``num_examples`` is
  ``data.num_examples`` if set, else the split size from the tfds metadata, the folder listing,
  the known ImageNet-100 split sizes, or (other class-filtered views) one counting pass over the
  labels.
- Everything runs with ``tf.data.Options.deterministic = True``; the same seed gives the same
  batches, run after run (for a given TensorFlow version).

Corrupt images: any example that fails to read or decode is dropped by tf.data
(``ignore_errors``) and its slot refilled with a copy of another image of the *same* batch, so
batch boundaries (and hence resume) never shift; each one is logged with its file name (the first
20, then every 100th), counted in ``source.num_corrupt`` and summarised at the end of each epoch.
A batch with no decodable image at all is an error. With ``data.skip_corrupt = False`` the first
corrupt image is an error naming the file.

Evaluation: ``create_eval_source(data_cfg, split, image_size=S)`` reads a split in a fixed
order, resizes the shorter side to ``S / data.eval_crop_fraction`` and centre-crops ``S x S``
(the standard 256 -> 224 protocol), and yields {"image": uint8 [b, S, S, 3], "label": int32 [b]}
(``.load()`` gives numpy arrays of the whole split).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import itertools
import os
import queue
import re
import threading
from typing import Iterator

import jax
import numpy as np
from absl import logging

from leave_one_out import config as config_lib
from leave_one_out import imagenet100
from leave_one_out import synthetic

SYNTHETIC, IMAGENET100, FOLDER = "synthetic", "imagenet100", "folder"
BUILTIN_DATASETS = (SYNTHETIC, IMAGENET100, FOLDER)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RESIZE_METHODS = ("bilinear", "bicubic", "area")
# name[/config][:version], as tfds.builder accepts it.
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")
_LOG_FIRST_CORRUPT, _LOG_EVERY_CORRUPT = 20, 100


class DataError(ValueError):
  """A problem with the data the user must fix: unknown dataset, data not prepared, class-list
  mismatch, empty split or folder, undecodable image (with ``data.skip_corrupt = False``)."""


def _tf():
  """TensorFlow for tf.data only: it never gets an accelerator (those belong to JAX)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  global _TF_READY
  if not _TF_READY:
    try:
      tf.config.set_visible_devices([], "GPU")  # (TF never touches TPUs unless asked to)
    except (RuntimeError, ValueError):  # already initialised
      pass
    _TF_READY = True
  return tf


_TF_READY = False


def _fn(fn):
  """A tf.data function traced as written (no AutoGraph rewrite: it has no Python control flow
  on tensors, and AutoGraph would need its source code)."""
  return _tf().autograph.experimental.do_not_convert(fn)


def _tfds():
  _tf()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds


# ------------------------------------------------------------------------------ names, classes


def check_dataset_name(name, data_dir: str = "") -> None:
  """ValueError (naming ``config.data.name``) unless ``name`` is built in or a tfds dataset.

  Cheap: the name must be a registered tfds builder, or a dataset directory must exist in
  ``data_dir`` (a dataset prepared by code not imported here). The config and version of
  ``name/config:version`` and the data itself are checked when the source is created.
  """
  if name in BUILTIN_DATASETS:
    return
  if not isinstance(name, str) or not _TFDS_NAME.match(name):
    raise ValueError(
        f"config.data.name must be one of {BUILTIN_DATASETS} or a tensorflow-datasets name "
        f"such as 'caltech_birds2011' or 'imagenet2012_corrupted/gaussian_noise_3', got {name!r}")
  base = name.split(":")[0].split("/")[0]
  known = set(_tfds().list_builders(with_community_datasets=False))
  if base not in known and not _tf().io.gfile.isdir(os.path.join(_tfds_root(data_dir), base)):
    close = difflib.get_close_matches(base, sorted(known) + list(BUILTIN_DATASETS), n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"config.data.name: unknown dataset {name!r}: neither one of "
                     f"{BUILTIN_DATASETS} nor a tensorflow-datasets builder{hint}")


def class_list(spec: str) -> tuple[str, ...] | None:
  """The classes named by ``data.classes``: None (all), the ImageNet-100 list, or a file's lines."""
  if not spec:
    return None
  if spec == IMAGENET100:
    return imagenet100.IMAGENET100_WNIDS
  tf = _tf()
  if not tf.io.gfile.exists(spec):
    raise DataError(f"config.data.classes={spec!r} is neither 'imagenet100' nor an existing "
                    "text file (one class name per line)")
  with tf.io.gfile.GFile(spec) as f:
    names = [line.strip() for line in f.read().splitlines()]
  names = [n for n in names if n and not n.startswith("#")]
  if not names:
    raise DataError(f"config.data.classes: {spec} lists no class names")
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise DataError(f"config.data.classes: {spec} lists {duplicates[:5]} more than once")
  return tuple(names)


def _class_mismatch(where: str, missing, available) -> DataError:
  example = ", ".join(sorted(available)[:3])
  return DataError(
      f"class list mismatch: {len(missing)} of the requested classes are not in {where}, e.g. "
      f"{', '.join(sorted(missing)[:5])}; its classes look like {example} "
      f"({len(available)} in all). Check config.data.classes (and, for ImageNet-100, that the "
      "dataset labels are ImageNet WordNet ids).")


def _seed(*parts) -> int:
  """A 31-bit seed derived from integers (epoch, host, purpose), stable across runs."""
  return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


# ------------------------------------------------------------------------------ image folders


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The files of one split of an image folder: ``files[i]`` has label ``labels[i]``."""
  files: np.ndarray  # str [N], sorted by class, then file name
  labels: np.ndarray  # int32 [N], indices into class_names
  class_names: tuple[str, ...]  # sorted
  ignored: int  # files with other extensions


def _isdir(tf, path: str) -> bool:
  return tf.io.gfile.isdir(path)


def list_image_folder(root: str, split: str, classes=None,
                      class_names: tuple[str, ...] | None = None) -> FolderListing:
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
  tf = _tf()
  if not root:
    raise DataError("config.data.data_dir must name the image folder root "
                    "(root/<split>/<class>/*.jpg) when config.data.name='folder'")
  if not _isdir(tf, root):
    raise DataError(f"image folder root {root} does not exist (config.data.data_dir)")
  split_dir = os.path.join(root, split)
  if not _isdir(tf, split_dir):
    found = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(root)
                   if _isdir(tf, os.path.join(root, d)))
    raise DataError(f"image folder {root} has no split {split!r} (found: {found or 'nothing'}); "
                    "expected root/<split>/<class>/*.jpg")
  dirs = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(split_dir)
                if not d.startswith(".") and _isdir(tf, os.path.join(split_dir, d)))
  if not dirs:
    raise DataError(f"{split_dir} holds no class subdirectories; expected "
                    f"{split_dir}/<class>/*.jpg|png")
  if classes is not None:
    missing = set(classes) - set(dirs)
    if missing:
      raise _class_mismatch(split_dir, missing, dirs)
    dirs = sorted(classes)
  names = tuple(dirs) if class_names is None else tuple(class_names)
  index = {n: i for i, n in enumerate(names)}
  unknown = [d for d in dirs if d not in index]
  if unknown:
    raise _class_mismatch(f"the reference class list ({len(names)} classes)", unknown, names)
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
    raise DataError(f"{split_dir} holds no images ({'/'.join(IMAGE_EXTENSIONS)}) in its "
                    f"{len(dirs)} class directories")
  if empty:
    logging.warning("%d class directories of %s hold no images, e.g. %s", len(empty), split_dir,
                    ", ".join(empty[:5]))
  if ignored:
    logging.info("%s: ignored %d files without an image extension %s", split_dir, ignored,
                 IMAGE_EXTENSIONS)
  return FolderListing(np.asarray(files), np.asarray(labels, np.int32), names, ignored)


# ------------------------------------------------------------------------------ tfds


def _tfds_root(data_dir: str) -> str:
  return (data_dir or os.environ.get("TFDS_DATA_DIR")
          or os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def _is_prepared(builder) -> bool:
  """Whether tfds data exists for this builder (metadata only; never downloads)."""
  return builder.is_prepared()


def _builder_from_files(name: str, data_dir: str):
  """A read-only builder from prepared files, for datasets whose code cannot build here."""
  tfds = _tfds()
  tf = _tf()
  base, _, version = name.partition(":")
  path = os.path.join(_tfds_root(data_dir), base)
  if not tf.io.gfile.isdir(path):
    return None
  versions = [v.rstrip("/") for v in tf.io.gfile.listdir(path)]
  versions = [v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+", v)
              and tf.io.gfile.exists(os.path.join(path, v, "dataset_info.json"))]
  if version and version not in ("*",):
    versions = [v for v in versions if v == version]
  if not versions:
    return None
  latest = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
  return tfds.builder_from_directory(os.path.join(path, latest))


def _build_command(name: str, builder, data_dir: str) -> str:
  root = _tfds_root(data_dir)
  command = f"tfds build {name.split(':')[0]} --data_dir={root}"
  instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  if instructions:
    command += (" --manual_dir=<dir>\n(this dataset needs a manual download first: "
                + " ".join(instructions.split()) + ")")
  return command


def tfds_builder(name: str, data_dir: str = ""):
  """The prepared tfds builder ``name`` (``name/config:version``) in ``data_dir``.

  Instant and offline: looks at the metadata only, never downloads or prepares.
  Raises:
    DataError: unknown dataset or config, or data not prepared (naming the tfds command).
  """
  tfds = _tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"unknown tfds dataset {name!r}: {str(e).splitlines()[0]}") from e
  except Exception as e:  # pylint: disable=broad-except
    # E.g. an unknown config, or code that needs files the installed package lacks.
    builder = _builder_from_files(name, data_dir)
    if builder is None:
      raise DataError(f"tfds cannot construct {name!r} and no prepared copy was found in "
                      f"{_tfds_root(data_dir)}: {e}") from e
  if not _is_prepared(builder):
    tf = _tf()
    base_dir = os.path.dirname(str(builder.data_dir))
    found = []
    if tf.io.gfile.isdir(base_dir):
      found = sorted(v.rstrip("/") for v in tf.io.gfile.listdir(base_dir))
    other = (f" Other versions found in {base_dir}: {found} (select one with "
             f"config.data.name='{name.split(':')[0]}:<version>').") if found else ""
    raise DataError(
        f"tfds dataset {name!r} is not prepared in {_tfds_root(data_dir)} (no "
        f"{builder.data_dir}/dataset_info.json). Training never downloads data; prepare it once "
        f"with\n  {_build_command(name, builder, data_dir)}\nand point config.data.data_dir "
        f"(or $TFDS_DATA_DIR) at that directory.{other}")
  return builder


@dataclasses.dataclass
class TfdsDataset:
  """A prepared tfds split with an optional class filter."""
  builder: object
  name: str
  split: str
  image_key: str
  label_key: str
  remap: np.ndarray | None  # int32 [num_labels]: new label, or -1 (dropped); None: no filter
  class_names: tuple[str, ...] | None  # label names after the filter (None: unknown)
  num_examples: int  # in the (filtered) split, over all hosts


def _known_size(name: str, split: str, classes) -> int | None:
  if classes is None or tuple(sorted(classes)) != tuple(sorted(imagenet100.IMAGENET100_WNIDS)):
    return None
  base = name.split(":")[0].split("/")[0]
  if base == "imagenet2012" or (base == "imagenet2012_corrupted" and split == "validation"):
    return imagenet100.IMAGENET100_SPLIT_SIZES.get(split)
  return None


def open_tfds(name: str, split: str, *, data_dir: str = "", classes=None, image_key="image",
              label_key="label", num_examples: int = 0, need_labels: bool = False,
              count: bool = True) -> TfdsDataset:
  """Checks a tfds split (prepared, features, class list, size) without reading images.

  ``num_examples`` (> 0) is taken as the split's size; otherwise it comes from the known
  ImageNet-100 sizes, the tfds metadata or (``count``) one pass over the labels.
  """
  builder = tfds_builder(name, data_dir)
  features = builder.info.features
  keys = list(features.keys())
  if image_key not in keys:
    raise DataError(f"tfds dataset {name!r} has no feature {image_key!r} "
                    f"(config.data.image_key); its features are {keys}")
  tfds = _tfds()
  if not isinstance(features[image_key], tfds.features.Image):
    raise DataError(f"feature {image_key!r} of {name!r} is not an image "
                    f"({type(features[image_key]).__name__}); set config.data.image_key")
  remap, names = None, None
  if (classes is not None or need_labels) and label_key not in keys:
    raise DataError(f"tfds dataset {name!r} has no feature {label_key!r} "
                    f"(config.data.label_key); its features are {keys}")
  if label_key in keys and isinstance(features[label_key], tfds.features.ClassLabel):
    names = tuple(features[label_key].names)
  if classes is not None:
    if names is None:
      raise DataError(f"config.data.classes needs class names, but {name!r} feature "
                      f"{label_key!r} is not a ClassLabel")
    missing = set(classes) - set(names)
    if missing:
      raise _class_mismatch(f"the labels of tfds {name!r}", missing, names)
    kept = sorted(classes)
    remap = np.full((len(names),), -1, np.int32)
    for new, cls in enumerate(kept):
      remap[names.index(cls)] = new
    names = tuple(kept)
  splits = dict(builder.info.splits)  # empty only under tfds.testing.mock_data
  unknown = [part for part in split.split("+") if part.split("[")[0].strip() not in splits]
  if splits and unknown:
    raise DataError(f"tfds dataset {name!r} has no split {unknown[0]!r}: its splits are "
                    f"{sorted(splits)} (slicing and '+' work: 'train[:90%]', 'train+validation')")
  if num_examples <= 0:
    num_examples = _known_size(name, split, classes) or 0
  if num_examples <= 0 and remap is None and splits:
    num_examples = builder.info.splits[split].num_examples
  data = TfdsDataset(builder, name, split, image_key, label_key, remap, names, num_examples)
  if not count:
    return data
  if data.num_examples <= 0:
    data.num_examples = _count(data)
    if remap is not None:
      logging.warning("%s %s restricted to %d classes holds %d examples (counted by reading "
                      "every record; for training, config.data.num_examples=%d skips the "
                      "count)", name, split, len(names), data.num_examples, data.num_examples)
  if data.num_examples <= 0:
    raise DataError(f"tfds dataset {name!r} split {split!r} is empty"
                    + (" after the class filter (config.data.classes)" if remap is not None
                       else ""))
  return data


def _decoders(data: TfdsDataset, labels: bool):
  tfds = _tfds()
  wanted = {data.image_key: True}
  if labels:
    wanted[data.label_key] = True
  return tfds.decode.PartialDecoding(
      wanted, decoders={data.image_key: tfds.decode.SkipDecoding()})


def _read_options(deterministic=True):
  tf = _tf()
  options = tf.data.Options()
  options.deterministic = deterministic
  return options


def _tfds_records(data: TfdsDataset, split: str, *, shuffle_seed: int | None, labels: bool,
                  with_ids: bool = False):
  """{"encoded": string, ["label": int32], ["name"]} of a (sub)split, class filter applied."""
  tfds, tf = _tfds(), _tf()
  read_config = tfds.ReadConfig(
      options=_read_options(), try_autocache=False, shuffle_seed=shuffle_seed,
      add_tfds_id=with_ids)
  ds = data.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                               read_config=read_config,
                               decoders=_decoders(data, labels or data.remap is not None))
  remap = None if data.remap is None else tf.constant(data.remap)

  def record(ex):
    out = {"encoded": ex[data.image_key]}
    if labels or remap is not None:
      label = tf.cast(ex[data.label_key], tf.int32)
      out["label"] = label if remap is None else tf.gather(remap, label)
    if with_ids:
      out["name"] = ex["tfds_id"]
    return out

  ds = ds.map(_fn(record), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if remap is not None:
    ds = ds.filter(_fn(lambda r: r["label"] >= 0))
    if not labels:
      ds = ds.map(_fn(lambda r: {k: v for k, v in r.items() if k != "label"}))
  return ds


def _count(data: TfdsDataset) -> int:
  """Examples of a (filtered) split: one pass over the labels (images are not decoded)."""
  tf = _tf()
  ds = _tfds_records(data, data.split, shuffle_seed=None, labels=False)
  return int(ds.reduce(tf.constant(0, tf.int64), _fn(lambda n, _: n + 1)).numpy())


def export_image_folder(name: str, split: str, out_root: str, *, data_dir: str = "",
                        classes=None, image_key: str = "image", label_key: str = "label",
                        out_split: str = "") -> int:
  """Writes a prepared tfds split as an image folder ``out_root/<out_split>/<class>/*.jpg|png``.

  The stored encoded bytes are copied (no re-encoding). Use it once to materialise a
  class-filtered view, e.g. ImageNet-100 (``name="imagenet2012"``, ``classes=
  imagenet100.IMAGENET100_WNIDS``; about 14 GB for train + validation), so that training reads
  only those images (``data.name="folder"``: exact shuffling, free resumes) instead of every
  ImageNet record. Returns the number of images written. Directory names are the class names.
  """
  tf = _tf()
  data = open_tfds(name, split, data_dir=data_dir, classes=classes, image_key=image_key,
                   label_key=label_key, need_labels=True, count=False)
  if data.class_names is None:
    raise DataError(f"{name!r} feature {label_key!r} has no class names to name directories")
  target = os.path.join(out_root, out_split or re.sub(r"[^A-Za-z0-9_+-]", "_", split))
  for cls in data.class_names:
    tf.io.gfile.makedirs(os.path.join(target, cls))
  written = 0
  records = _tfds_records(data, split, shuffle_seed=None, labels=True)
  for record in records.as_numpy_iterator():
    encoded = record["encoded"]
    ext = ".png" if encoded[:4] == b"\x89PNG" else ".jpg"
    path = os.path.join(target, data.class_names[record["label"]], f"{written:08d}{ext}")
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(encoded)
    written += 1
    if written % 10_000 == 0:
      logging.info("export_image_folder: %d images written to %s", written, target)
  if not written:
    raise DataError(f"tfds {name!r} split {split!r} has no examples to export")
  return written


# ------------------------------------------------------------------------------ decoding


ANTIALIAS = ("auto", "always", "never")
_JPEG_RATIOS = (1, 2, 4, 8)


def _decode(tf, encoded, min_side=None):
  """uint8 [h, w, 3] and the original (height, width) as float32.

  ``min_side``: the decoded image may be smaller than the original, but keeps both sides at
  least this many pixels: a JPEG is then decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
  (libjpeg's scaled IDCT, an area-like filter), which is several times faster than decoding at
  full size and resizing. Other formats are decoded at full size.
  """
  if min_side is None:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    return image, size

  def jpeg():
    shape = tf.image.extract_jpeg_shape(encoded)
    factor = tf.reduce_min(shape[:2]) // min_side
    branch = tf.reduce_sum(tf.cast(factor >= tf.constant(_JPEG_RATIOS[1:]), tf.int32))
    image = tf.switch_case(branch, [
        (lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r)) for r in _JPEG_RATIOS])
    return image, tf.cast(shape[:2], tf.float32)

  def other():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image, tf.cast(tf.shape(image)[:2], tf.float32)

  is_jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
  image, size = tf.cond(is_jpeg, jpeg, other)
  image.set_shape([None, None, 3])
  return image, size


def _resize(tf, image, new_size, method: str, antialias: str):
  """Resize to ``new_size`` [2] (float32 out; the identity when the size already matches).

  ``antialias``: "always" / "never" antialias ``method``; "auto" uses plain ``method`` where no
  side shrinks by more than 2x (its taps still cover most pixels), a box filter ("area", as cheap
  as bilinear) where both sides shrink and one by more than 2x, and antialiased ``method``
  otherwise. Antialiased bilinear (``tf.image.resize(antialias=True)``) costs about as much as
  decoding the JPEG; docs/data.md has the measurements.
  """
  def resize(aa, how=method):
    return lambda: tf.image.resize(image, new_size, method=how, antialias=aa)

  def general():
    if antialias != "auto":
      return resize(antialias == "always")()
    ratio = tf.cast(tf.shape(image)[:2], tf.float32) / tf.cast(new_size, tf.float32)
    shrink, least = tf.reduce_max(ratio), tf.reduce_min(ratio)
    return tf.cond(shrink <= 2.0, resize(False),
                   lambda: tf.cond(least >= 1.0, resize(False, "area"), resize(True)))

  same = tf.reduce_all(tf.shape(image)[:2] == tf.cast(new_size, tf.int32))
  return tf.cond(same, lambda: tf.cast(image, tf.float32), general)


def _to_uint8(tf, image):
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def decode_resize(encoded, size: int, method: str = "bilinear", antialias: str = "auto"):
  """Training: the whole image resized to ``size x size`` (uint8) and its original width / height.

  JPEGs at least twice ``size`` on both sides are decoded at reduced scale first (``_decode``).
  """
  tf = _tf()
  image, original = _decode(tf, encoded, min_side=size)
  aspect = original[1] / original[0]
  image = _to_uint8(tf, _resize(tf, image, [size, size], method, antialias))
  image.set_shape([size, size, 3])
  return image, aspect


def decode_center_crop(encoded, size: int, crop_fraction: float = 0.875,
                       method: str = "bilinear", antialias: str = "auto"):
  """Evaluation: shorter side resized to ``round(size / crop_fraction)``, centre ``size`` crop."""
  tf = _tf()
  short = max(int(round(size / crop_fraction)), size)
  image, _ = _decode(tf, encoded, min_side=short)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  new = tf.maximum(tf.cast(tf.round(shape * short / tf.reduce_min(shape)), tf.int32), size)
  image = _resize(tf, image, new, method, antialias)
  top = (new[0] - size) // 2
  left = (new[1] - size) // 2
  image = _to_uint8(tf, image[top:top + size, left:left + size])
  image.set_shape([size, size, 3])
  return image


# ------------------------------------------------------------------------------ train sources


@dataclasses.dataclass(frozen=True)
class InMemorySource:
  """Shuffled epochs over images held in host memory.

  Attributes:
    images: uint8 `[N, H, W, 3]`, the whole training set.
    global_batch: examples per step over all hosts.
    seed: epoch ``e`` is permutation ``(seed, e)``; the last partial batch of an epoch is dropped.
    process_index / process_count: this host's share is a contiguous slice of the global batch,
      matching the order of ``jax.make_array_from_process_local_data``.
  """
  images: np.ndarray
  global_batch: int
  seed: int
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    if len(self.images) < self.global_batch:
      raise ValueError(f"the dataset has {len(self.images)} images, fewer than one global batch "
                       f"({self.global_batch})")
    if self.global_batch % self.process_count:
      raise ValueError(f"global batch {self.global_batch} does not split over "
                       f"{self.process_count} hosts")

  @property
  def steps_per_epoch(self) -> int:
    return len(self.images) // self.global_batch

  def indices(self, step: int) -> np.ndarray:
    """Dataset indices of this host's examples at ``step``: `[global_batch / hosts]`."""
    epoch, within = divmod(int(step), self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.images))
    local = self.global_batch // self.process_count
    start = within * self.global_batch + self.process_index * local
    return order[start:start + local]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This host's examples at ``step``: {"image": uint8 `[B / hosts, H, W, 3]`, "aspect"}."""
    images = self.images[self.indices(step)]
    return {"image": images, "aspect": np.ones((len(images),), np.float32)}

  def iterate(self, start_step: int = 0):
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    step = start_step
    while True:
      yield self.batch(step)
      step += 1


class _HostPipeline:
  """Decoding, batching and corrupt-image handling shared by the tf.data sources.

  A source turns a step into a stream of *positions* (``pos = step * local_batch + k``) and
  records {"encoded", "pos"}; this class decodes them in parallel, drops undecodable ones and
  re-assembles batches by position, so a dropped image never shifts a batch boundary.
  """

  def __init__(self, *, num_examples: int, global_batch: int, image_size: int, seed: int,
               skip_corrupt: bool = True, decode_threads: int = 0, host_prefetch: int = 2,
               resize_method: str = "bilinear", antialias: str = "auto",
               process_index: int = 0, process_count: int = 1, description: str = ""):
    if global_batch % process_count:
      raise DataError(f"global batch {global_batch} does not split over {process_count} hosts")
    if num_examples < global_batch:
      raise DataError(f"{description} has {num_examples} examples, fewer than one global batch "
                      f"({global_batch}); lower config.train.batch_size")
    self.num_examples = int(num_examples)
    self.global_batch = int(global_batch)
    self.local_batch = global_batch // process_count
    self.image_size = int(image_size)
    self.seed = int(seed)
    self.skip_corrupt = bool(skip_corrupt)
    self.decode_threads = int(decode_threads)
    self.host_prefetch = int(host_prefetch)
    self.resize_method = resize_method
    self.antialias = antialias
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self.description = description
    self.num_corrupt = 0  # examples skipped on this host since the source was created
    self._epoch_corrupt = 0

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch

  def __repr__(self):
    return (f"{type(self).__name__}({self.description}: {self.num_examples} examples, "
            f"{self.steps_per_epoch} steps of {self.global_batch}, host "
            f"{self.process_index}/{self.process_count})")

  # Subclasses: where a position's image comes from (for messages and diagnosis).
  def describe(self, pos: int) -> str:
    raise NotImplementedError

  def _raw(self, start_pos: int, count: int) -> list[tuple[str, bytes]]:
    raise NotImplementedError

  def _decoded(self, records):
    """records {"encoded", "pos"} -> batches {"image", "aspect", "pos"} (tf.data)."""
    tf = _tf()
    size, method, antialias = self.image_size, self.resize_method, self.antialias

    def decode(r):
      image, aspect = decode_resize(r["encoded"], size, method, antialias)
      return {"image": image, "aspect": aspect, "pos": r["pos"]}

    threads = self.decode_threads or tf.data.AUTOTUNE
    ds = records.map(_fn(decode), num_parallel_calls=threads, deterministic=True)
    if self.skip_corrupt:
      ds = ds.ignore_errors()
    ds = ds.batch(self.local_batch).prefetch(self.host_prefetch)
    return ds.with_options(_read_options())

  def _diagnose(self, start_pos: int, error) -> DataError:
    """The first undecodable image of the batch at ``start_pos``, as an error naming it."""
    tf = _tf()
    for name, encoded in self._raw(start_pos, self.local_batch):
      try:
        decode_resize(tf.constant(encoded), self.image_size, self.resize_method, self.antialias)
      except Exception as e:  # pylint: disable=broad-except
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        return DataError(f"undecodable image {name} ({message}); set "
                         "config.data.skip_corrupt=True to skip such images")
    return DataError(f"reading the batch at position {start_pos} ({self.describe(start_pos)}) "
                     f"failed: {error}")

  def _aligned(self, batches, first_pos: int, end_pos: int | None) -> Iterator[dict]:
    """Numpy batches of exactly ``local_batch`` positions each, from ``first_pos`` on."""
    tf = _tf()
    b = self.local_batch
    start, pending = first_pos, None
    iterator = iter(batches)
    while True:
      try:
        got = next(iterator)
      except StopIteration:
        break
      except tf.errors.OpError as e:
        raise self._diagnose(start, e) from e
      pos = got["pos"]
      if (pending is None and len(pos) == b and pos[0] == start and pos[-1] == start + b - 1):
        yield self._finish(start, {"image": got["image"], "aspect": got["aspect"]})
        start += b
        continue
      pending = got if pending is None else {
          k: np.concatenate([pending[k], got[k]]) for k in got}
      while pending is not None and pending["pos"][-1] >= start + b:
        pending, batch = self._take(pending, start)
        yield self._finish(start, batch)
        start += b
    while end_pos is not None and start < end_pos and pending is not None:
      pending, batch = self._take(pending, start)
      yield self._finish(start, batch)
      start += b

  def _take(self, pending, start):
    """Splits off the batch at ``start``, refilling dropped slots with the batch's own images."""
    b = self.local_batch
    if pending is None:
      chunk, rest = None, None
    else:
      take = pending["pos"] < start + b
      chunk = {k: v[take] for k, v in pending.items()}
      rest = {k: v[~take] for k, v in pending.items()} if not take.all() else None
    n = 0 if chunk is None else len(chunk["pos"])
    if n == 0:
      raise DataError(f"no decodable image in a whole batch of {b} ({self.description}, "
                      f"e.g. {self.describe(start)}); is the data corrupt?")
    slots = (chunk["pos"] - start).astype(np.int64)
    missing = np.setdiff1d(np.arange(b), slots)
    image = np.empty((b,) + chunk["image"].shape[1:], chunk["image"].dtype)
    aspect = np.empty((b,), np.float32)
    image[slots], aspect[slots] = chunk["image"], chunk["aspect"]
    for m in missing:
      src = int(m) % n  # deterministic stand-in: another image of the same batch
      image[m], aspect[m] = chunk["image"][src], chunk["aspect"][src]
      self.num_corrupt += 1
      self._epoch_corrupt += 1
      if (self.num_corrupt <= _LOG_FIRST_CORRUPT
          or self.num_corrupt % _LOG_EVERY_CORRUPT == 0):
        logging.warning("Skipped an unreadable image (%d so far on this host): %s",
                        self.num_corrupt, self.describe(start + int(m)))
    return rest, {"image": image, "aspect": aspect}

  def _finish(self, start: int, batch: dict) -> dict:
    step = start // self.local_batch
    if (step + 1) % self.steps_per_epoch == 0 and self._epoch_corrupt:
      logging.warning("Epoch %d: skipped %d unreadable images on host %d (%d in all); each was "
                      "replaced by another image of its batch.", step // self.steps_per_epoch,
                      self._epoch_corrupt, self.process_index, self.num_corrupt)
      self._epoch_corrupt = 0
    return batch


class FolderSource(_HostPipeline):
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
      raise DataError(f"config.data.num_examples={self.num_examples} exceeds the "
                      f"{len(self.files)} files of {self.description}")

  def _file_index(self, pos):
    """tf: the file index of host-local position(s) ``pos`` (int64)."""
    tf = _tf()
    pos = tf.cast(pos, tf.int64)
    b, spe = self.local_batch, self.steps_per_epoch
    step, k = pos // b, pos % b
    epoch, within = step // spe, step % spe
    place = within * self.global_batch + self.process_index * b + k
    seed = tf.stack([tf.constant(self.seed, tf.int64), epoch], axis=-1)
    return tf.random.experimental.index_shuffle(
        place, seed=seed, max_index=tf.constant(len(self.files) - 1, tf.int64))

  def file_indices(self, step: int) -> np.ndarray:
    """File indices of this host's examples at ``step`` (for tests and tools)."""
    tf = _tf()
    b = self.local_batch
    pos = tf.range(step * b, (step + 1) * b, dtype=tf.int64)
    return np.stack([int(self._file_index(p)) for p in pos])

  def describe(self, pos: int) -> str:
    return str(self.files[int(self._file_index(int(pos)))])

  def _raw(self, start_pos, count):
    tf = _tf()
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
    tf = _tf()
    paths = tf.constant(self.files)
    b = self.local_batch
    end = np.iinfo(np.int64).max // 2

    def record(pos):
      path = tf.gather(paths, self._file_index(pos))
      return {"encoded": tf.io.read_file(path), "pos": pos}

    ds = tf.data.Dataset.range(start_step * b, end)
    threads = self.decode_threads or tf.data.AUTOTUNE
    return ds.map(_fn(record), num_parallel_calls=threads, deterministic=True)

  def iterate(self, start_step: int = 0) -> Iterator[dict]:
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    start_step = int(start_step)
    ds = self._decoded(self._records(start_step))
    yield from self._aligned(ds.as_numpy_iterator(), start_step * self.local_batch, None)


class TfdsSource(_HostPipeline):
  """Training batches from a prepared tfds split (sequential reads; see the module docstring)."""

  def __init__(self, data: TfdsDataset, *, shuffle_buffer: int = 10_000, **kwargs):
    self.data = data
    self.shuffle_buffer = int(shuffle_buffer)
    super().__init__(num_examples=data.num_examples, **kwargs)
    if self.process_count > 1:
      self.host_split = _tfds().split_for_jax_process(
          data.split, process_index=self.process_index, process_count=self.process_count,
          drop_remainder=True)
    else:
      self.host_split = data.split

  def describe(self, pos: int) -> str:
    step, k = divmod(int(pos), self.local_batch)
    epoch, within = divmod(step, self.steps_per_epoch)
    return (f"{self.data.name} {self.data.split}: example {k} of step {within} of epoch "
            f"{epoch} on host {self.process_index}")

  def _epoch_records(self, epoch: int, skip: int, with_ids: bool = False):
    """This host's records of ``epoch`` from local position ``skip`` on (not decoded)."""
    tf = _tf()
    quota = self.steps_per_epoch * self.local_batch
    ds = _tfds_records(self.data, self.host_split, labels=False, with_ids=with_ids,
                       shuffle_seed=_seed(self.seed, epoch, self.process_index, 1))
    ds = ds.shuffle(self.shuffle_buffer, seed=_seed(self.seed, epoch, self.process_index, 2),
                    reshuffle_each_iteration=False)
    # Every host takes exactly `quota` records; a shorter shard wraps around (repeat() of an
    # empty dataset ends, so an empty shard ends the epoch early and is reported).
    ds = ds.repeat().take(quota).skip(skip)
    first = epoch * quota + skip
    positions = tf.data.Dataset.range(first, first + quota - skip)
    ds = tf.data.Dataset.zip((ds, positions))
    return ds.map(_fn(lambda r, pos: dict(r, pos=pos)))

  def _raw(self, start_pos, count):
    step = start_pos // self.local_batch
    epoch, within = divmod(step, self.steps_per_epoch)
    ds = self._epoch_records(epoch, within * self.local_batch, with_ids=True).take(count)
    return [(f"{self.data.name} record {r['name'].decode()}", r["encoded"])
            for r in ds.as_numpy_iterator()]

  def _epoch_batches(self, epoch: int, within: int) -> Iterator[dict]:
    b, spe = self.local_batch, self.steps_per_epoch
    ds = self._decoded(self._epoch_records(epoch, within * b))
    produced = 0
    for batch in self._aligned(ds.as_numpy_iterator(), (epoch * spe + within) * b,
                               (epoch + 1) * spe * b):
      produced += 1
      yield batch
    if produced < spe - within:
      raise DataError(f"{self.description} yielded {produced} of {spe - within} batches in "
                      f"epoch {epoch} on host {self.process_index}: its shard of the split is "
                      "empty (after the class filter, if any) or ends in unreadable images")

  def iterate(self, start_step: int = 0) -> Iterator[dict]:
    """Batches for ``start_step``, ``start_step + 1``, ... (endless)."""
    spe = self.steps_per_epoch
    epoch, within = divmod(int(start_step), spe)
    current = self._epoch_batches(epoch, within)
    lookahead = max(1, min(4, spe // 4))

    def start(e):  # build epoch e's pipeline and pull its first batch (in the background)
      gen = self._epoch_batches(e, 0)
      return gen, next(gen)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="next_epoch") as pool:
      while True:
        upcoming = None
        for step_in_epoch, batch in enumerate(current, start=within):
          if upcoming is None and step_in_epoch >= spe - lookahead:
            upcoming = pool.submit(start, epoch + 1)
          yield batch
        if upcoming is None:
          upcoming = pool.submit(start, epoch + 1)
        gen, first = upcoming.result()
        current = itertools.chain([first], gen)
        epoch, within = epoch + 1, 0


def _pipeline_kwargs(cfg) -> dict:
  d = cfg.data
  return dict(global_batch=cfg.train.batch_size, image_size=d.image_size, seed=cfg.seed,
              skip_corrupt=d.skip_corrupt, decode_threads=d.decode_threads,
              host_prefetch=d.host_prefetch, resize_method=d.resize_method,
              antialias=d.antialias, process_index=jax.process_index(),
              process_count=jax.process_count())


def create_train_source(cfg):
  """The training source named by ``cfg.data`` for this host (see the module docstring)."""
  d = cfg.data
  if d.name == SYNTHETIC:
    data = synthetic.load("train", num_examples=d.num_train, image_size=d.image_size,
                          seed=cfg.seed, max_light=config_lib.synthetic_light(d))
    return InMemorySource(data["image"], cfg.train.batch_size, cfg.seed,
                          jax.process_index(), jax.process_count())
  classes = class_list(d.classes)
  if d.name == FOLDER:
    listing = list_image_folder(d.data_dir, d.train_split, classes)
    source = FolderSource(listing.files, num_examples=d.num_examples,
                          description=f"image folder {os.path.join(d.data_dir, d.train_split)}",
                          **_pipeline_kwargs(cfg))
  else:
    name = d.name
    if name == IMAGENET100:
      name, classes = "imagenet2012", imagenet100.IMAGENET100_WNIDS
    else:
      check_dataset_name(name, d.data_dir)
    data = open_tfds(name, d.train_split, data_dir=d.data_dir, classes=classes,
                     image_key=d.image_key, label_key=d.label_key, num_examples=d.num_examples)
    source = TfdsSource(data, shuffle_buffer=d.shuffle_buffer,
                        description=f"tfds {name} {d.train_split}"
                        + (f" ({len(classes)} classes)" if classes else ""),
                        **_pipeline_kwargs(cfg))
  logging.info("Training data: %r", source)
  return source


# ------------------------------------------------------------------------------ device prefetch


class _Failure:
  def __init__(self, error):
    self.error = error


_END = object()


class _DevicePrefetcher:
  """Iterator over global batches placed on the devices ahead of time by one worker thread."""

  def __init__(self, batches, sharding, size: int):
    self._buffer: queue.Queue = queue.Queue(maxsize=max(1, size))
    self._stop = threading.Event()
    self._batches, self._sharding = batches, sharding
    self._thread = threading.Thread(target=self._produce, name="prefetch_to_device", daemon=True)
    self._thread.start()  # fills the buffer now, before the first next()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._buffer.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _produce(self):
    try:
      for batch in self._batches:
        placed = jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self._sharding, x), batch)
        if not self._put(placed):
          return
      self._put(_END)
    except BaseException as e:  # pylint: disable=broad-except
      self._put(_Failure(e))

  def __iter__(self):
    return self

  def __next__(self):
    if self._stop.is_set():
      raise StopIteration
    item = self._buffer.get()
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    return item

  def close(self, timeout: float = 60.0) -> None:
    """Stops the worker and waits for it: no thread is left inside JAX or tf.data at exit."""
    self._stop.set()
    if self._thread.is_alive() and self._thread is not threading.current_thread():
      self._thread.join(timeout)


def prefetch_to_device(batches, sharding, size: int = 2) -> _DevicePrefetcher:
  """Global ``jax.Array`` batches, ``size`` of them placed ahead by a background thread.

  Args:
    batches: an iterator of this host's numpy batches (``source.iterate(step)``).
    sharding: the batch sharding (e.g. ``NamedSharding(mesh, P("data"))``); each host's batch
      becomes its slice of the global array (``jax.make_array_from_process_local_data``).
    size: batches kept on device ahead of the consumer.

  Returns an iterator; call its ``close()`` when done (it stops and joins the thread, so no
  thread is left inside JAX or tf.data when the interpreter exits). An error in the input is
  re-raised in the consumer. Multi-host: every host calls this with its own
  ``source.iterate(step)``; no collective runs in the thread.
  """
  return _DevicePrefetcher(batches, sharding, size)


# ------------------------------------------------------------------------------ evaluation


class EvalSource:
  """A labelled split in a fixed order, resized (shorter side) and centre-cropped on the host.

  Attributes:
    num_examples: examples this host yields (before any skipped corrupt image; with several
      hosts on a tfds split, to within one example).
    num_classes, class_names: the label space (names None where the dataset has none).
    num_corrupt: unreadable images skipped so far (``data.skip_corrupt``).
  """

  def __init__(self, records_fn, *, num_examples: int, num_classes: int, class_names,
               image_size: int, batch_size: int, crop_fraction: float, skip_corrupt: bool,
               resize_method: str, antialias: str, description: str):
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
    return (f"EvalSource({self.description}: {self.num_examples} examples, "
            f"{self.num_classes} classes, {self.image_size} px)")

  def iterate(self) -> Iterator[dict]:
    """{"image": uint8 [b, S, S, 3], "label": int32 [b]}; the last batch may be smaller."""
    tf = _tf()
    size, fraction = self.image_size, self.crop_fraction
    method, antialias = self.resize_method, self.antialias

    def decode(r):
      return {"image": decode_center_crop(r["encoded"], size, fraction, method, antialias),
              "label": r["label"], "index": r["index"]}

    ds = self._records_fn()
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.range(np.iinfo(np.int64).max)))
    ds = ds.map(_fn(lambda r, i: dict(r, index=i)))
    ds = ds.map(_fn(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if self.skip_corrupt:
      ds = ds.ignore_errors()
    ds = ds.batch(self.batch_size).prefetch(2).with_options(_read_options())
    seen = 0
    try:
      for batch in ds.as_numpy_iterator():
        index = batch.pop("index")
        skipped = int(index[-1]) + 1 - seen - len(index)
        if skipped:
          self.num_corrupt += skipped
          logging.warning("%s: skipped %d unreadable images (%d in all)", self.description,
                          skipped, self.num_corrupt)
        seen = int(index[-1]) + 1
        yield batch
    except tf.errors.OpError as e:
      raise DataError(f"{self.description}: an image failed to decode after {seen} examples "
                      f"({str(e).splitlines()[0] if str(e) else e}); set "
                      "config.data.skip_corrupt=True to skip such images") from e

  def load(self) -> dict[str, np.ndarray]:
    """The whole split as numpy: {"image": uint8 [N, S, S, 3], "label": int32 [N]}."""
    images, labels = [], []
    for batch in self.iterate():
      images.append(batch["image"])
      labels.append(batch["label"])
    if not images:
      raise DataError(f"{self.description} yielded no images")
    return {"image": np.concatenate(images), "label": np.concatenate(labels).astype(np.int32)}


def create_eval_source(data_cfg, split: str | None = None, *, image_size: int,
                       batch_size: int = 256, num_examples: int = 0,
                       crop_fraction: float | None = None, process_index: int = 0,
                       process_count: int = 1, seed: int = 0) -> EvalSource:
  """An evaluation source for ``split`` (default ``data_cfg.eval_split``) of ``data_cfg``.

  Args:
    data_cfg: a config's ``data`` section (``config.default_config().data`` layout).
    split: tfds split (slicing works) or folder subdirectory.
    image_size: S, the side of the returned images.
    batch_size: examples per yielded batch.
    num_examples: the first N examples of the split's fixed order (0 = all). tfds splits are
      stored shuffled; a folder's files are put in a fixed pseudo-random order (``seed``) first,
      so N examples are a class-balanced-ish sample rather than the first classes.
    crop_fraction: centre-crop fraction (default ``data_cfg.eval_crop_fraction``; 1.0 = resize
      the shorter side to S and crop, e.g. for ImageNet-C whose images are already crops).
    process_index, process_count: read only this host's contiguous share.
  Labels are the dataset's (after ``data.classes``, 0..K-1 in sorted class-name order; a folder
  split's labels follow the training split's class list, so train and test labels agree).
  """
  d = data_cfg
  split = split or d.eval_split
  fraction = d.eval_crop_fraction if crop_fraction is None else crop_fraction
  common = dict(image_size=image_size, batch_size=batch_size, crop_fraction=fraction,
                skip_corrupt=d.skip_corrupt, resize_method=d.resize_method,
                antialias=d.antialias)
  tf = _tf()
  if d.name == SYNTHETIC:
    raise DataError("the synthetic dataset has its own evaluation loader "
                    "(leave_one_out.synthetic.load / evaluate.load_synthetic)")
  classes = class_list(d.classes)
  if d.name == FOLDER:
    reference = None
    if split != d.train_split and _isdir(tf, os.path.join(d.data_dir, d.train_split)):
      reference = list_image_folder(d.data_dir, d.train_split, classes).class_names
    listing = list_image_folder(d.data_dir, split, classes, class_names=reference)
    order = np.random.default_rng(seed).permutation(len(listing.files))
    if num_examples:
      order = order[:num_examples]
    order = np.array_split(order, process_count)[process_index]
    files, labels = listing.files[order], listing.labels[order]

    def records():
      ds = tf.data.Dataset.from_tensor_slices({"path": files, "label": labels})
      read = _fn(lambda r: {"encoded": tf.io.read_file(r["path"]), "label": r["label"]})
      return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return EvalSource(records, num_examples=len(files), num_classes=len(listing.class_names),
                      class_names=listing.class_names,
                      description=f"image folder {os.path.join(d.data_dir, split)}", **common)

  name = d.name
  if name == IMAGENET100:
    name, classes = "imagenet2012", imagenet100.IMAGENET100_WNIDS
  else:
    check_dataset_name(name, d.data_dir)
  data = open_tfds(name, split, data_dir=d.data_dir, classes=classes, image_key=d.image_key,
                   label_key=d.label_key, need_labels=True)
  total = min(num_examples, data.num_examples) if num_examples else data.num_examples
  host_split, limit = split, (total if num_examples else None)
  if num_examples and data.remap is None and not re.search(r"[\[+]", split):
    host_split, limit = f"{split}[:{total}]", None  # tfds slicing: hosts can share it out
  per_host = total
  if process_count > 1:
    host_split = _tfds().split_for_jax_process(host_split, process_index=process_index,
                                               process_count=process_count)
    per_host = total // process_count  # approximately: tfds splits evenly to +-1 example
    limit = None if limit is None else per_host

  def records():
    ds = _tfds_records(data, host_split, shuffle_seed=None, labels=True)
    return ds if limit is None else ds.take(limit)

  if data.class_names is None:
    raise DataError(f"evaluation needs class labels, but {name!r} feature {d.label_key!r} is "
                    "not a ClassLabel; set config.data.label_key")
  num_classes = len(data.class_names)
  return EvalSource(records, num_examples=per_host, num_classes=num_classes,
                    class_names=data.class_names, description=f"tfds {name} {split}", **common)


def load_eval_arrays(data_cfg, split: str | None = None, **kwargs) -> dict:
  """``create_eval_source(...).load()`` plus "num_classes" and "class_names"."""
  source = create_eval_source(data_cfg, split, **kwargs)
  out = source.load()
  out.update(num_classes=source.num_classes, class_names=source.class_names)
  return out
