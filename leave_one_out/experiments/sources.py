"""The data sources the claims experiment needs beyond the embedded dataset's defaults.

- ``photos`` (``leave_one_out.photos``): patches of scikit-image's sample photographs. Pretraining
  config: ``data.name = "photos"``, ``data.image_size``, ``data.num_train``; evaluation config:
  ``dataset.name = "photos"``, label ``photo``.
- the embedded dataset with options the pipeline does not read yet: ``data.synthetic_hue_jitter``
  (degrees, ``synthetic.generate``'s ``hue_jitter``; 30 spreads the object hues over the colour
  circle). Its evaluation source ``synthetic_hues`` adds the label ``hue`` (``synthetic.hue_bins``
  of the exact hue, ``HUE_BINS`` bins) to shape, colour and texture.

``registered()`` makes ``train.train_and_evaluate`` and ``evaluate.run`` see them while it is
open, by routing ``input_pipeline.create_train_source`` (and its dataset-name check) and
``evaluate.DATASET_SOURCES`` through this module; every other config goes to the original code
unchanged. This is a stop-gap until the data registry (``leave_one_out/data/``) gives every
source one module of its own.
"""

from __future__ import annotations

import contextlib

from leave_one_out import config as config_lib
from leave_one_out import photos
from leave_one_out import synthetic

PHOTOS = "photos"
SYNTHETIC_HUES = "synthetic_hues"
HUE_BINS = 24


def hue_jitter(data_cfg) -> float:
  """The embedded dataset's hue jitter for a data section (``synthetic.HUE_JITTER`` if unset)."""
  return float(data_cfg.get("synthetic_hue_jitter", synthetic.HUE_JITTER))


def train_images(cfg):
  """uint8 [N, S0, S0, 3] training images for the data sections this module handles, else None."""
  d = cfg.data
  if d.name == PHOTOS:
    return photos.load("train", num_examples=d.num_train, image_size=d.image_size,
                       seed=cfg.seed)["image"]
  if d.name == "synthetic" and "synthetic_hue_jitter" in d:
    return synthetic.load("train", num_examples=d.num_train, image_size=d.image_size,
                          seed=cfg.seed, max_light=config_lib.synthetic_light(d),
                          hue_jitter=hue_jitter(d))["image"]
  return None


def _eval_size_and_seed(eval_cfg, pretrain_cfg) -> tuple[int, int]:
  size = eval_cfg.dataset.image_size or pretrain_cfg.data.image_size
  seed = pretrain_cfg.seed if eval_cfg.dataset.seed < 0 else eval_cfg.dataset.seed
  return size, seed


def load_photos(split: str, num_examples: int, eval_cfg, pretrain_cfg) -> dict:
  """Evaluation source "photos": {"image", "labels": {"photo"}, "num_classes", "source"}."""
  size, seed = _eval_size_and_seed(eval_cfg, pretrain_cfg)
  data = photos.load(split, num_examples=num_examples, image_size=size, seed=seed)
  return {"image": data["image"], "labels": {"photo": data["photo"]},
          "num_classes": {"photo": len(photos.PHOTOS)},
          "class_names": {"photo": photos.PHOTOS},
          "source": f"scikit-image photographs ({len(photos.PHOTOS)} photos, random patches)"}


def load_synthetic_hues(split: str, num_examples: int, eval_cfg, pretrain_cfg) -> dict:
  """Evaluation source "synthetic_hues": the embedded dataset with the fine label ``hue``.

  The light and hue jitter are the pretraining data section's.
  """
  size, seed = _eval_size_and_seed(eval_cfg, pretrain_cfg)
  data = synthetic.load(split, num_examples=num_examples, image_size=size, seed=seed,
                        max_light=config_lib.synthetic_light(pretrain_cfg.data),
                        hue_jitter=hue_jitter(pretrain_cfg.data))
  labels = {name: data[name] for name in synthetic.FACTORS}
  labels["hue"] = synthetic.hue_bins(data["hue"], HUE_BINS)
  num_classes = {name: len(v) for name, v in synthetic.FACTORS.items()}
  num_classes["hue"] = HUE_BINS
  return {"image": data["image"], "labels": labels, "num_classes": num_classes,
          "source": f"embedded dataset, hue jitter +-{hue_jitter(pretrain_cfg.data):g} degrees"}


EVAL_SOURCES = {PHOTOS: load_photos, SYNTHETIC_HUES: load_synthetic_hues}


@contextlib.contextmanager
def registered():
  """While open, pretraining reads ``train_images`` and evaluation knows ``EVAL_SOURCES``."""
  from leave_one_out import evaluate  # pylint: disable=import-outside-toplevel
  from leave_one_out import input_pipeline  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel

  create, check = input_pipeline.create_train_source, input_pipeline.check_dataset_name

  def create_train_source(cfg):
    images = train_images(cfg)
    if images is None:
      return create(cfg)
    return input_pipeline.InMemorySource(images, cfg.train.batch_size, cfg.seed,
                                         jax.process_index(), jax.process_count())

  def check_dataset_name(name, data_dir=""):
    if name != PHOTOS:
      check(name, data_dir)

  added = [name for name in EVAL_SOURCES if name not in evaluate.DATASET_SOURCES]
  input_pipeline.create_train_source = create_train_source
  input_pipeline.check_dataset_name = check_dataset_name
  evaluate.DATASET_SOURCES.update({name: EVAL_SOURCES[name] for name in added})
  try:
    yield
  finally:
    input_pipeline.create_train_source, input_pipeline.check_dataset_name = create, check
    for name in added:
      evaluate.DATASET_SOURCES.pop(name, None)
