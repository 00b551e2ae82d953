"""Patches of scikit-image's sample photographs as a data source (``config.data.name = "photos"``).

The images come from ``leave_one_out.photos`` (square patches at random positions and scales of
the photographs in ``skimage.data``; offline, deterministic), held in host memory. Splits:
"train" (``data.num_train`` patches) and a held-out split named "test" (or "validation"), drawn
from disjoint seeds of the same photographs. Evaluation batches carry "label" = "photo" (which
photograph the patch comes from). Needs scikit-image: ``pip install -e '.[photos]'``.
"""

from __future__ import annotations

import importlib.util

import jax

from leave_one_out import photos
from leave_one_out.data import common
from leave_one_out.data import evaluation
from leave_one_out.data import memory

RENDERED = True  # cut in memory at data.image_size (leave_one_out.data)
SPLITS = {"train": "train", "test": "test", "validation": "test"}  # config split -> generator's


def validate(d) -> None:
  memory.validate_generated(d, SPLITS, "photos")
  if d.image_size < photos.MIN_IMAGE_SIZE:
    raise ValueError(f"config.data.image_size must be >= {photos.MIN_IMAGE_SIZE} for the photos "
                     f"dataset, got {d.image_size}")


def check_ready(d, splits: dict) -> None:
  del d, splits
  if importlib.util.find_spec("skimage") is None:
    raise common.DataError("config.data.name = 'photos' needs scikit-image, which ships the "
                           "photographs: pip install -e '.[photos]' (or pip install "
                           "scikit-image)")


def describe(d) -> str:
  del d
  return f"patches of scikit-image's sample photographs ({len(photos.PHOTOS)} photographs)"


def train_source(cfg) -> memory.InMemorySource:
  d = cfg.data
  if d.num_train < cfg.train.batch_size:
    raise ValueError(f"config.data.num_train ({d.num_train}) must hold at least one batch "
                     f"(config.train.batch_size = {cfg.train.batch_size})")
  check_ready(d, {})
  images = photos.load(SPLITS[d.train_split], num_examples=d.num_train,
                       image_size=d.image_size, seed=cfg.seed)["image"]
  return memory.InMemorySource(images, cfg.train.batch_size, cfg.seed, jax.process_index(),
                               jax.process_count())


def eval_source(d, split: str, *, image_size: int, batch_size: int, num_examples: int,
                seed: int, process_index: int, process_count: int,
                **unused) -> evaluation.ArrayEvalSource:
  """``split`` cut at ``image_size`` from ``seed``; ``num_examples`` 0 = the default size."""
  del unused  # host decoding settings: nothing to decode
  check_ready(d, {})
  data = photos.load(SPLITS[split], num_examples=num_examples or None, image_size=image_size,
                     seed=seed)
  arrays = memory.host_share({"image": data["image"], "label": data["photo"],
                              "photo": data["photo"]}, process_index, process_count)
  return evaluation.ArrayEvalSource(
      arrays, num_classes=len(photos.PHOTOS), class_names=photos.PHOTOS,
      batch_size=batch_size, description=f"{describe(d)}, {split}")
