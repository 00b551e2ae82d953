"""ImageNet-100 (``config.data.name = "imagenet100"``): tfds imagenet2012, the CMC 100 classes.

The 100 WordNet ids are ``leave_one_out.data.pipeline.classes.IMAGENET100_WNIDS``; labels are 0..99 in
sorted wnid order (the order of an ImageFolder copy). Everything else is the tfds source
(``leave_one_out.data.tfds``): prepare ImageNet once with ``tfds build imagenet2012
--manual_dir=...``; training never downloads. On slow storage, export the 100 classes once to an
image folder (``leave_one_out.data.tfds.export_image_folder``, about 14 GB) and train with
``data.name = "folder"``.
"""

from __future__ import annotations

from leave_one_out import fields
from leave_one_out.data import tfds
from leave_one_out.data.pipeline import classes as class_lists

TFDS_NAME = "imagenet2012"


def validate(d) -> None:
  fields.Section(d, "config.data").check(
    d.classes in ("", "imagenet100"),
    "classes",
    f"must be '' for data.name='imagenet100' (its classes are fixed), got {d.classes!r}",
  )


def check_ready(d, splits: dict) -> None:
  tfds.check_ready(d, splits, name=TFDS_NAME)


def describe(d) -> str:
  return tfds.describe(d, name=TFDS_NAME) + ", the ImageNet-100 classes"


def train_source(cfg):
  return tfds.train_source(cfg, name=TFDS_NAME, classes=class_lists.IMAGENET100_WNIDS)


def eval_source(d, split: str, **kwargs):
  return tfds.eval_source(d, split, name=TFDS_NAME, classes=class_lists.IMAGENET100_WNIDS, **kwargs)
