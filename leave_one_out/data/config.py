"""The data section of the config (``config.data``): every field, its default, its validation.

Defaults are ImageNet-100 as docs/method.md's recipe reads it; configs/demo.py
switches to the embedded dataset. Fields that only some sources read say so; ``validate`` checks
the types and ranges of every field, then asks the source (``leave_one_out.data.SOURCES``) to
check what it needs. Nothing is read from disk here except what a source's check needs (a tfds
name is looked up in tfds' registry).
"""

from __future__ import annotations

import ml_collections

from leave_one_out import data as data_lib
from leave_one_out.data import decode


def default_config() -> ml_collections.ConfigDict:
  d = ml_collections.ConfigDict()
  # A registered source (leave_one_out.data.SOURCES): synthetic (the embedded shapes dataset),
  # imagenet100 (tfds imagenet2012, the CMC 100 classes), folder (data_dir/<split>/<class>/
  # *.jpg|jpeg|png), or else any tensorflow-datasets image dataset: "name", "name/config" or
  # "name:version".
  d.name = "imagenet100"
  d.data_dir = ""  # tfds: its data_dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets; gs://
  #                  works); folder: the root holding <split>/<class>/ images
  d.train_split = "train"  # tfds split (slicing works: "train[:90%]") or folder subdirectory
  d.eval_split = "validation"  # the split evaluation pipelines read by default
  d.classes = ""  # tfds / folder: keep only these classes, relabelled 0..K-1 in sorted name
  #                 order: "" = all; "imagenet100" = the CMC list; else a text file, one per line
  d.image_size = 256  # S0: side of the uint8 image the host sends per example (the whole image
  #                     is resized to S0 x S0; its original aspect ratio goes along)
  d.num_train = 4096  # synthetic only: training-set size
  d.synthetic_light = 0.5  # synthetic only: strength of the light from above, in [0, 1)
  #                          (leave_one_out/synthetic.py); 0 = evenly lit scenes, where
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


def _check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ValueError(f"config.data.{field} {message}")


def _integer(d, field: str, minimum: int) -> None:
  value = d[field]
  _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, field,
         f"must be an integer >= {minimum}, got {value!r}")


def _string(d, field: str, *, empty: bool = False) -> None:
  value = d[field]
  _check(isinstance(value, str) and (empty or value.strip() != ""), field,
         f"must be a{'' if empty else ' non-empty'} string, got {value!r}")


def validate(d: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid field of the data section ``d``."""
  for field in ("name", "train_split", "eval_split", "image_key", "label_key"):
    _string(d, field)
  for field in ("data_dir", "classes"):
    _string(d, field, empty=True)
  _integer(d, "image_size", 1)
  _integer(d, "num_train", 1)
  _integer(d, "num_examples", 0)
  _integer(d, "synthetic_hue_bins", 0)
  _integer(d, "shuffle_buffer", 1)
  _integer(d, "decode_threads", 0)
  _integer(d, "host_prefetch", 1)
  _check(isinstance(d.skip_corrupt, bool), "skip_corrupt",
         f"must be True or False, got {d.skip_corrupt!r}")
  _check(d.resize_method in decode.RESIZE_METHODS, "resize_method",
         f"must be one of {decode.RESIZE_METHODS}, got {d.resize_method!r}")
  _check(d.antialias in decode.ANTIALIAS, "antialias",
         f"must be one of {decode.ANTIALIAS}, got {d.antialias!r}")
  f = d.eval_crop_fraction
  _check(isinstance(f, (int, float)) and 0 < f <= 1, "eval_crop_fraction",
         f"must be in (0, 1], got {f!r}")
  data_lib.validate(d)
