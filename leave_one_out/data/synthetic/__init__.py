"""The embedded shapes dataset as a data source (``config.data.name = "synthetic"``).

The images come from ``leave_one_out.data.synthetic.scenes`` (procedural, numpy, no download), held in host
memory. Splits: "train" (``data.num_train`` images) and a held-out split named "test" (or
"validation", the data section's default ``eval_split``), drawn from disjoint seeds. Evaluation
batches carry every factor as a label: "label" is the shape, plus "shape", "color", "texture",
and "hue" (the exact object hue in ``data.synthetic_hue_bins`` bins) when that field is > 0.
"""

from __future__ import annotations

import jax

from leave_one_out import data as data_lib
from leave_one_out import fields
from leave_one_out.data.pipeline import eval_split
from leave_one_out.data.pipeline import memory
from leave_one_out.data.synthetic import scenes

RENDERED = True  # rendered in memory at data.image_size (leave_one_out.data)
SPLITS = {"train": "train", "test": "test", "validation": "test"}  # config split -> generator's


def light(d) -> float:
  """The generator's ``max_light`` for a data section. A config saved before the field existed
  (``data.synthetic_light``, added 2026-11-29) trained on evenly lit scenes: 0."""
  return float(d.get("synthetic_light", 0.0))


def hue_jitter(d) -> float:
  """The generator's ``hue_jitter`` (configs saved before ``data.synthetic_hue_jitter`` existed
  used the generator's default)."""
  return float(d.get("synthetic_hue_jitter", scenes.HUE_JITTER))


def _load(d, split: str, **kwargs) -> dict:
  return scenes.load(SPLITS[split], max_light=light(d), hue_jitter=hue_jitter(d), **kwargs)


def validate(d) -> None:
  check = fields.Section(d, "config.data")
  check.number("synthetic_light", 0.0, 1.0, high_open=True)
  check.number("synthetic_hue_jitter", 0.0, scenes.MAX_HUE_JITTER)  # degrees
  check.check(
    d.synthetic_hue_bins != 1, "synthetic_hue_bins", "must be 0 (no hue label) or >= 2, got 1"
  )
  memory.validate_generated(d, SPLITS, "synthetic")


def check_ready(d, splits: dict) -> None:
  del d, splits  # generated on demand: always ready


def describe(d) -> str:
  return (
    f"the embedded shapes dataset (light from above {light(d):g}, hue jitter "
    f"+-{hue_jitter(d):g} degrees)"
  )


def train_source(cfg) -> memory.InMemorySource:
  d = cfg.data
  data_lib.check_one_batch(d.num_train, cfg.train.batch_size, "config.data.num_train")
  data = _load(d, d.train_split, num_examples=d.num_train, image_size=d.image_size, seed=cfg.seed)
  return memory.InMemorySource(
    data["image"], cfg.train.batch_size, cfg.seed, jax.process_index(), jax.process_count()
  )


def eval_source(
  d,
  split: str,
  *,
  image_size: int,
  batch_size: int,
  num_examples: int,
  seed: int,
  process_index: int,
  process_count: int,
  **unused,
) -> eval_split.ArrayEvalSource:
  """``split`` rendered at ``image_size`` from ``seed`` (the pretraining seed, to reproduce the
  run's own images); ``num_examples`` 0 = the generator's default split size."""
  del unused  # host decoding settings: nothing to decode
  data = _load(d, split, num_examples=num_examples or None, image_size=image_size, seed=seed)
  arrays = {"image": data["image"], "label": data["shape"]}
  arrays.update({name: data[name] for name in scenes.FACTORS})
  if d.get("synthetic_hue_bins", 0):
    arrays["hue"] = scenes.hue_bins(data["hue"], d.synthetic_hue_bins)
  arrays = memory.host_share(arrays, process_index, process_count)
  return eval_split.ArrayEvalSource(
    arrays,
    num_classes=len(scenes.SHAPES),
    class_names=scenes.SHAPES,
    batch_size=batch_size,
    description=f"{describe(d)}, {split}",
  )
