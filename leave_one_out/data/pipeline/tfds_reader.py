"""Reading prepared tensorflow-datasets data: the builder of a name (never downloading; an
unprepared dataset is an error naming its ``tfds build`` command), a split opened with an
optional class filter (``TfdsDataset``), its records, its size, and the export of a split to an
image folder (``export_image_folder``). The training source is ``leave_one_out.data.tfds``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re

import numpy as np
from absl import logging

from leave_one_out.data import DataError
from leave_one_out.data.pipeline import classes as class_lists
from leave_one_out.data.pipeline import tf_data

# name[/config][:version], as tfds.builder accepts it.
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.\-]+)?(:[0-9.*]+)?$")


def check_dataset_name(name, data_dir: str = "", registered=()) -> None:
  """ValueError (naming ``config.data.name``) unless ``name`` is a tfds dataset.

  Cheap: the name must be a registered tfds builder, or a dataset directory must exist in
  ``data_dir`` (a dataset prepared by code not imported here). The config and version of
  ``name/config:version`` and the data itself are checked when the source is created.
  ``registered``: the project's own source names, for the message and the spelling hint.
  """
  registered = tuple(registered)
  if not isinstance(name, str) or not _TFDS_NAME.match(name):
    raise ValueError(
      f"config.data.name must be one of {registered} or a tensorflow-datasets name "
      f"such as 'caltech_birds2011' or 'imagenet2012_corrupted/gaussian_noise_3', got {name!r}"
    )
  base = name.split(":")[0].split("/")[0]
  known = set(tf_data.tfds().list_builders(with_community_datasets=False))
  if base not in known and not tf_data.tf().io.gfile.isdir(os.path.join(tfds_root(data_dir), base)):
    close = difflib.get_close_matches(base, sorted(known) + list(registered), n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise ValueError(
      f"config.data.name: unknown dataset {name!r}: neither one of "
      f"{registered} nor a tensorflow-datasets builder{hint}"
    )


def tfds_root(data_dir: str) -> str:
  """tfds' data directory: ``data_dir``, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return (
    data_dir
    or os.environ.get("TFDS_DATA_DIR")
    or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
  )


def _is_prepared(builder) -> bool:
  """Whether tfds data exists for this builder (metadata only; never downloads)."""
  return builder.is_prepared()


def _builder_from_files(name: str, data_dir: str):
  """A read-only builder from prepared files, for datasets whose code cannot build here."""
  tfds = tf_data.tfds()
  tf = tf_data.tf()
  base, _, version = name.partition(":")
  path = os.path.join(tfds_root(data_dir), base)
  if not tf.io.gfile.isdir(path):
    return None
  versions = [v.rstrip("/") for v in tf.io.gfile.listdir(path)]
  versions = [
    v
    for v in versions
    if re.fullmatch(r"\d+\.\d+\.\d+", v)
    and tf.io.gfile.exists(os.path.join(path, v, "dataset_info.json"))
  ]
  if version and version not in ("*",):
    versions = [v for v in versions if v == version]
  if not versions:
    return None
  latest = max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))
  return tfds.builder_from_directory(os.path.join(path, latest))


def _build_command(name: str, builder, data_dir: str) -> str:
  root = tfds_root(data_dir)
  command = f"tfds build {name.split(':')[0]} --data_dir={root}"
  instructions = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
  if instructions:
    command += (
      " --manual_dir=<dir>\n(this dataset needs a manual download first: "
      + " ".join(instructions.split())
      + ")"
    )
  return command


def tfds_builder(name: str, data_dir: str = ""):
  """The prepared tfds builder ``name`` (``name/config:version``) in ``data_dir``.

  Instant and offline: looks at the metadata only, never downloads or prepares.
  Raises:
    DataError: unknown dataset or config, or data not prepared (naming the tfds command).
  """
  tfds = tf_data.tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataError(f"unknown tfds dataset {name!r}: {str(e).splitlines()[0]}") from e
  except Exception as e:  # pylint: disable=broad-except
    # E.g. an unknown config, or code that needs files the installed package lacks.
    builder = _builder_from_files(name, data_dir)
    if builder is None:
      raise DataError(
        f"tfds cannot construct {name!r} and no prepared copy was found in "
        f"{tfds_root(data_dir)}: {e}"
      ) from e
  if not _is_prepared(builder):
    tf = tf_data.tf()
    base_dir = os.path.dirname(str(builder.data_dir))
    found = []
    if tf.io.gfile.isdir(base_dir):
      found = sorted(v.rstrip("/") for v in tf.io.gfile.listdir(base_dir))
    other = (
      (
        f" Other versions found in {base_dir}: {found} (select one with "
        f"config.data.name='{name.split(':')[0]}:<version>')."
      )
      if found
      else ""
    )
    raise DataError(
      f"tfds dataset {name!r} is not prepared in {tfds_root(data_dir)} (no "
      f"{builder.data_dir}/dataset_info.json). Training never downloads data; prepare it once "
      f"with\n  {_build_command(name, builder, data_dir)}\nand point config.data.data_dir "
      f"(or $TFDS_DATA_DIR) at that directory.{other}"
    )
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
  if classes is None or tuple(sorted(classes)) != tuple(sorted(class_lists.IMAGENET100_WNIDS)):
    return None
  base = name.split(":")[0].split("/")[0]
  if base == "imagenet2012" or (base == "imagenet2012_corrupted" and split == "validation"):
    return class_lists.IMAGENET100_SPLIT_SIZES.get(split)
  return None


def open_tfds(
  name: str,
  split: str,
  *,
  data_dir: str = "",
  classes=None,
  image_key="image",
  label_key="label",
  num_examples: int = 0,
  need_labels: bool = False,
  count: bool = True,
) -> TfdsDataset:
  """Checks a tfds split (prepared, features, class list, size) without reading images.

  ``num_examples`` (> 0) is taken as the split's size; otherwise it comes from the known
  ImageNet-100 sizes, the tfds metadata or (``count``) one pass over the labels.
  """
  builder = tfds_builder(name, data_dir)
  features = builder.info.features
  keys = list(features.keys())
  if image_key not in keys:
    raise DataError(
      f"tfds dataset {name!r} has no feature {image_key!r} "
      f"(config.data.image_key); its features are {keys}"
    )
  tfds = tf_data.tfds()
  if not isinstance(features[image_key], tfds.features.Image):
    raise DataError(
      f"feature {image_key!r} of {name!r} is not an image "
      f"({type(features[image_key]).__name__}); set config.data.image_key"
    )
  remap, names = None, None
  if (classes is not None or need_labels) and label_key not in keys:
    raise DataError(
      f"tfds dataset {name!r} has no feature {label_key!r} "
      f"(config.data.label_key); its features are {keys}"
    )
  if label_key in keys and isinstance(features[label_key], tfds.features.ClassLabel):
    names = tuple(features[label_key].names)
  if classes is not None:
    if names is None:
      raise DataError(
        f"config.data.classes needs class names, but {name!r} feature "
        f"{label_key!r} is not a ClassLabel"
      )
    missing = set(classes) - set(names)
    if missing:
      raise class_lists.class_mismatch(f"the labels of tfds {name!r}", missing, names)
    kept = sorted(classes)
    remap = np.full((len(names),), -1, np.int32)
    for new, cls in enumerate(kept):
      remap[names.index(cls)] = new
    names = tuple(kept)
  splits = dict(builder.info.splits)  # empty only under tfds.testing.mock_data
  unknown = [part for part in split.split("+") if part.split("[")[0].strip() not in splits]
  if splits and unknown:
    raise DataError(
      f"tfds dataset {name!r} has no split {unknown[0]!r}: its splits are "
      f"{sorted(splits)} (slicing and '+' work: 'train[:90%]', 'train+validation')"
    )
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
      logging.warning(
        "%s %s restricted to %d classes holds %d examples (counted by reading "
        "every record; for training, config.data.num_examples=%d skips the "
        "count)",
        name,
        split,
        len(names),
        data.num_examples,
        data.num_examples,
      )
  if data.num_examples <= 0:
    raise DataError(
      f"tfds dataset {name!r} split {split!r} is empty"
      + (" after the class filter (config.data.classes)" if remap is not None else "")
    )
  return data


def _decoders(data: TfdsDataset, labels: bool):
  tfds = tf_data.tfds()
  wanted = {data.image_key: True}
  if labels:
    wanted[data.label_key] = True
  return tfds.decode.PartialDecoding(wanted, decoders={data.image_key: tfds.decode.SkipDecoding()})


def tfds_records(
  data: TfdsDataset, split: str, *, shuffle_seed: int | None, labels: bool, with_ids: bool = False
):
  """{"encoded": string, ["label": int32], ["name"]} of a (sub)split, class filter applied."""
  tfds, tf = tf_data.tfds(), tf_data.tf()
  read_config = tfds.ReadConfig(
    options=tf_data.read_options(),
    try_autocache=False,
    shuffle_seed=shuffle_seed,
    add_tfds_id=with_ids,
  )
  ds = data.builder.as_dataset(
    split=split,
    shuffle_files=shuffle_seed is not None,
    read_config=read_config,
    decoders=_decoders(data, labels or data.remap is not None),
  )
  remap = None if data.remap is None else tf.constant(data.remap)

  def record(ex):
    out = {"encoded": ex[data.image_key]}
    if labels or remap is not None:
      label = tf.cast(ex[data.label_key], tf.int32)
      out["label"] = label if remap is None else tf.gather(remap, label)
    if with_ids:
      out["name"] = ex["tfds_id"]
    return out

  ds = ds.map(tf_data.tf_function(record), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if remap is not None:
    ds = ds.filter(tf_data.tf_function(lambda r: r["label"] >= 0))
    if not labels:
      ds = ds.map(tf_data.tf_function(lambda r: {k: v for k, v in r.items() if k != "label"}))
  return ds


def _count(data: TfdsDataset) -> int:
  """Examples of a (filtered) split: one pass over the labels (images are not decoded)."""
  tf = tf_data.tf()
  ds = tfds_records(data, data.split, shuffle_seed=None, labels=False)
  return int(ds.reduce(tf.constant(0, tf.int64), tf_data.tf_function(lambda n, _: n + 1)).numpy())


def export_image_folder(
  name: str,
  split: str,
  out_root: str,
  *,
  data_dir: str = "",
  classes=None,
  image_key: str = "image",
  label_key: str = "label",
  out_split: str = "",
) -> int:
  """Writes a prepared tfds split as an image folder ``out_root/<out_split>/<class>/*.jpg|png``.

  The stored encoded bytes are copied (no re-encoding). Use it once to materialise a
  class-filtered view, e.g. ImageNet-100 (``name="imagenet2012"``, ``classes=
  class_lists.IMAGENET100_WNIDS``; about 14 GB for train + validation), so that training reads
  only those images (``data.name="folder"``: exact shuffling, free resumes) instead of every
  ImageNet record. Returns the number of images written. Directory names are the class names.
  """
  tf = tf_data.tf()
  data = open_tfds(
    name,
    split,
    data_dir=data_dir,
    classes=classes,
    image_key=image_key,
    label_key=label_key,
    need_labels=True,
    count=False,
  )
  if data.class_names is None:
    raise DataError(f"{name!r} feature {label_key!r} has no class names to name directories")
  target = os.path.join(out_root, out_split or re.sub(r"[^A-Za-z0-9_+-]", "_", split))
  for cls in data.class_names:
    tf.io.gfile.makedirs(os.path.join(target, cls))
  written = 0
  records = tfds_records(data, split, shuffle_seed=None, labels=True)
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
